"""Healthchecks, run by the container's monitor (``monitor._Monitor``) on its own poll loop.

A probe is ``<runtime> exec --pid-file F <id> <test...>`` with its output on a pipe, started
when due: every Interval, every StartInterval while the container is starting within its
StartPeriod, the first one an interval after the start (as Docker waits). A probe that
outlives Timeout is killed (its process in the container through the pid file, and the
runtime's exec) and counts as failed with ExitCode -1. Results follow Docker's rules: a
success makes the container healthy and clears FailingStreak; a failure adds to the streak
(not while starting inside the start period) and Retries failures in a row make it
unhealthy. The last five results (output cut at 4096 bytes) are kept in State.Health.

``on_failure`` is podman's --health-on-failure: what the monitor does when the container
becomes unhealthy (none, kill, restart, stop); the monitor carries it out.

Only imported by monitors whose container has a healthcheck; imports ``os`` and ``time``.
"""

import os
import time

SECOND = 1_000_000_000
DEFAULTS = {"Interval": 30 * SECOND, "Timeout": 30 * SECOND, "StartPeriod": 0,
            "StartInterval": 5 * SECOND, "Retries": 3}
MAX_LOG = 5
MAX_OUTPUT = 4096
ACTIONS = ("none", "kill", "restart", "stop")


def probe_command(config):
    """The argv of a healthcheck's Test, or None when there is no check (NONE, empty)."""
    test = list((config or {}).get("Test") or [])
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(test[1:])]
    if test[0] == "CMD":
        return test[1:] or None
    return ["/bin/sh", "-c", " ".join(test)]


def go_duration(ns):
    """Go's time.Duration.String() for the durations a healthcheck uses: 30s, 1m30s, 500ms."""
    if ns == 0:
        return "0s"
    if ns < SECOND:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return f"{_trim(ns / size)}{unit}"
    h, rest = divmod(ns, 3600 * SECOND)
    m, rest = divmod(rest, 60 * SECOND)
    text = f"{h}h" if h else ""
    if h or m:
        text += f"{m}m"
    return text + f"{_trim(rest / SECOND)}s"


def _trim(x):
    return f"{x:.9f}".rstrip("0").rstrip(".")


def _stamp(ns):
    secs, frac = divmod(ns, SECOND)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


class Checker:
    """One container's healthcheck. The monitor asks ``timeout_ms`` before it polls, gives
    ``owns``/``on_fd`` the fds it registered, and calls ``tick`` after every poll."""

    def __init__(self, config, command, runtime, container_id, poller, env, pid_file,
                 report, on_change, health=None, owned=None):
        self.conf = {k: int((config or {}).get(k) or 0) or v for k, v in DEFAULTS.items()}
        self.command = command
        self.runtime = list(runtime)
        self.container_id = container_id
        self.poller = poller
        self.env = env
        self.pid_file = pid_file
        self.report = report          # report(health dict): save it
        self.on_change = on_change    # on_change(status): events, --health-on-failure
        self.owned = owned if owned is not None else set()  # pids we wait for ourselves
        old = health or {}
        self.health = {"Status": "starting", "FailingStreak": 0,
                       "Log": list(old.get("Log") or [])[-MAX_LOG:]}
        self.started_ns = 0
        self.due_ns = None
        self.probe = None             # (pid, pidfd, out fd, start ns, deadline ns)
        self.output = b""

    # -- scheduling

    def start(self):
        """The container (re)started: starting again, first probe an interval away."""
        self.stop(report=False)
        self.health.update(Status="starting", FailingStreak=0)
        self.started_ns = time.time_ns()
        self.report(self.health)
        self._schedule(time.monotonic_ns())

    def stop(self, report=True):
        """The container stopped: kill a running probe; Docker shows it unhealthy."""
        self.due_ns = None
        if self.probe is not None:
            self._kill_probe()
            self._end_probe(None)
        if report and self.health["Status"] != "unhealthy":
            self.health["Status"] = "unhealthy"
            self.report(self.health)

    def _in_start_period(self):
        return self.health["Status"] == "starting" and \
            time.time_ns() - self.started_ns < self.conf["StartPeriod"]

    def _schedule(self, after_ns):
        every = self.conf["StartInterval"] if self._in_start_period() else self.conf["Interval"]
        self.due_ns = after_ns + every

    def timeout_ms(self):
        """Milliseconds until the next thing to do (a probe due, a probe's deadline)."""
        now = time.monotonic_ns()
        if self.probe is not None:
            when = self.probe[4]
        elif self.due_ns is not None:
            when = self.due_ns
        else:
            return None
        return max(0, (when - now) // 1_000_000 + 1)

    def tick(self):
        now = time.monotonic_ns()
        if self.probe is not None:
            if now >= self.probe[4]:
                self._kill_probe()
                self._end_probe(-1)
        elif self.due_ns is not None and now >= self.due_ns:
            self._run_probe()

    # -- the probe

    def owns(self, fd):
        return self.probe is not None and fd in (self.probe[1], self.probe[2])

    def on_fd(self, fd):
        pid, pidfd, out, _, _ = self.probe
        if fd == out:
            self._read(out)
            return
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            status = 255 << 8
        self.owned.discard(pid)
        self._read(out)
        self._end_probe(os.waitstatus_to_exitcode(status), reaped=True)

    def _read(self, fd):
        try:
            data = os.read(fd, 65536)
        except (BlockingIOError, OSError):
            return
        if not data:
            try:
                self.poller.unregister(fd)
            except KeyError:
                pass
            return
        if len(self.output) < MAX_OUTPUT:
            self.output += data[:MAX_OUTPUT - len(self.output)]

    def _run_probe(self):
        self.due_ns = None
        _unlink(self.pid_file)
        argv = [*self.runtime, "exec", "--pid-file", self.pid_file, self.container_id,
                *self.command]
        r, w = os.pipe()
        null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        start = time.time_ns()
        try:
            pid = os.posix_spawnp(argv[0], argv, self.env, setsid=True, file_actions=[
                (os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, w, 1),
                (os.POSIX_SPAWN_DUP2, w, 2)])
        except OSError as err:
            os.close(r)
            self._result(start, 1, f"{argv[0]}: {err.strerror}")
            return
        finally:
            os.close(w)
            os.close(null)
        self.owned.add(pid)  # before the zygote's reaper of strays could see it
        os.set_blocking(r, False)
        os.set_inheritable(r, False)
        pidfd = os.pidfd_open(pid)
        self.poller.register(pidfd, 1)
        self.poller.register(r, 1)
        self.output = b""
        self.probe = (pid, pidfd, r, start, time.monotonic_ns() + self.conf["Timeout"])

    def _kill_probe(self):
        # The runtime's exec waits for the process in the container: kill that one first.
        try:
            with open(self.pid_file) as f:
                inner = int(f.read().strip() or 0)
        except (OSError, ValueError):
            inner = 0
        for pid in (inner, self.probe[0]):
            if pid > 0:
                try:
                    os.kill(pid, 9)
                except OSError:
                    pass

    def _end_probe(self, code, reaped=False):
        pid, pidfd, out, start, _ = self.probe
        self.probe = None
        for fd in (pidfd, out):
            try:
                self.poller.unregister(fd)
            except KeyError:
                pass
        if not reaped:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            self.owned.discard(pid)
        os.close(pidfd)
        os.close(out)
        _unlink(self.pid_file)
        if code is None:
            return
        if code == -1:
            text = f"Health check exceeded timeout ({go_duration(self.conf['Timeout'])})"
        else:
            text = self.output.decode("utf-8", "replace")
        self._result(start, code, text)

    def _result(self, start_ns, code, output):
        h = self.health
        entry = {"Start": _stamp(start_ns), "End": _stamp(time.time_ns()), "ExitCode": code,
                 "Output": output}
        h["Log"] = (h["Log"] + [entry])[-MAX_LOG:]
        before = h["Status"]
        if code == 0:
            h["FailingStreak"] = 0
            h["Status"] = "healthy"
        elif not self._in_start_period():
            h["FailingStreak"] += 1
            if h["FailingStreak"] >= self.conf["Retries"]:
                h["Status"] = "unhealthy"
        self.report(h)
        self._schedule(time.monotonic_ns())
        if h["Status"] != before:
            self.on_change(h["Status"])


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
