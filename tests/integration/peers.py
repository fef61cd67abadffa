"""Private podman and dockerd instances that use berth-oci, for the drop-in tests.

Everything an engine writes lives under one short temporary directory (short: containerd
puts unix sockets under dockerd's --exec-root, and a socket path has 108 bytes at most):

* ``RuntimeWrapper`` - a shell script that appends its argv to ``argv.log`` and execs the
  runtime under test ($BERTH_OCI, else the installed /usr/local/bin/berth-oci), so a failing
  test can show exactly what the engine asked of the runtime;
* ``Podman`` - podman with its own --root, --runroot, --tmpdir and a cgroup parent of its own;
  containers run with --network none, so no bridge, netns or firewall rule is made;
* ``Dockerd`` - dockerd (and the containerd it starts) with its own --data-root,
  --exec-root, socket, pidfile and --cgroup-parent, no iptables and no bridge.

``close()`` on either removes its containers, stops what it started, unmounts whatever is
still mounted under its directory, removes its cgroups and the directory; it returns the
problems it met instead of raising, so a test's own failure is never hidden by cleanup.
"""
import os
import shlex
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time

import pytest

INSTALLED_BERTH_OCI = "/usr/local/bin/berth-oci"
CGROUP_ROOT = "/sys/fs/cgroup"


def runtime_command():
    """The berth-oci command line under test: $BERTH_OCI, else the installed launcher."""
    return os.environ.get("BERTH_OCI") or INSTALLED_BERTH_OCI


def missing(*programs):
    """The programs of ``programs`` that are not on PATH."""
    return [p for p in programs if shutil.which(p) is None]


def needs(*programs):
    """A skip mark naming whichever of ``programs`` is not installed."""
    absent = missing(*programs)
    return pytest.mark.skipif(bool(absent), reason=f"not installed: {', '.join(absent)}")


def make_rootfs_tar(rootfs, dest):
    """A tarball of ``rootfs`` (its contents at the archive's top) at ``dest``."""
    with tarfile.open(dest, "w") as tar:
        for name in sorted(os.listdir(rootfs)):
            tar.add(os.path.join(rootfs, name), arcname=name)
    return dest


class RuntimeWrapper:
    """A script engines run as their OCI runtime: logs argv, then execs berth-oci."""

    def __init__(self, directory, command=None):
        self.path = os.path.join(directory, "berth-oci-logged")
        self.log = os.path.join(directory, "argv.log")
        command = command or runtime_command()
        with open(self.path, "w") as f:
            f.write("#!/bin/sh\n"
                    f"printf '%s\\n' \"$*\" >> {shlex.quote(self.log)}\n"
                    f"exec {command} \"$@\"\n")
        os.chmod(self.path, 0o755)

    def calls(self):
        """The argument lines the engine passed, oldest first."""
        try:
            with open(self.log) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def verbs(self):
        """The verb of each call (the first word that is not a global flag or its value)."""
        out = []
        for line in self.calls():
            words = line.split()
            i = 0
            while i < len(words) and words[i].startswith("-"):
                i += 1 if words[i] in ("--debug", "--systemd-cgroup") or "=" in words[i] else 2
            out.append(words[i] if i < len(words) else "")
        return out

    def report(self, last=12):
        return "berth-oci calls (newest last):\n  " + "\n  ".join(self.calls()[-last:])


class _Engine:
    """What Podman and Dockerd share: a private directory, cgroups, a wrapper."""

    name = "engine"

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix=f"bt-{self.name}-", dir="/tmp")
        self.tag = os.path.basename(self.dir)
        self.cgroup_parent = f"/{self.tag}"
        self.runtime = RuntimeWrapper(self.dir)

    def start(self):
        return self

    def run(self, *args, check=True, **kw):
        """`<engine> run` with the flags every test's container takes (see run_args)."""
        return self("run", *self.run_args(), *args, check=check, **kw)

    def inspect(self, name, fmt):
        return self("inspect", "--format", fmt, name).stdout.strip()

    def import_image(self, tarball, ref):
        self("import", tarball, ref, timeout=120)

    def call(self, argv, check=True, timeout=60, input=None):
        """Run any command line in the engine's directory; failures name the runtime calls."""
        # Output goes through files: a detached container may keep a pipe open for long.
        # The working directory is ours: conmon writes an "oom" file into its own.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.run(argv, check=False, stdout=out, stderr=err,
                                  timeout=timeout, cwd=self.dir,
                                  stdin=subprocess.DEVNULL if input is None else None,
                                  input=None if input is None else input.encode())
            out.seek(0)
            err.seek(0)
            proc.stdout = out.read().decode(errors="replace")
            proc.stderr = err.read().decode(errors="replace")
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {proc.returncode}\n--- stdout\n{proc.stdout}"
                f"--- stderr\n{proc.stderr}\n{self.runtime.report()}")
        return proc

    def _unmount_all(self, problems):
        for target in sorted(_mounts_under(self.dir), key=len, reverse=True):
            r = subprocess.run(["umount", "-l", target], check=False, capture_output=True,
                               text=True)
            if r.returncode != 0:
                problems.append(f"umount {target}: {r.stderr.strip()}")

    def _remove_cgroups(self, problems, parents):
        for parent in parents:
            for controller in _cgroup_hierarchies():
                top = os.path.join(CGROUP_ROOT, controller, parent.strip("/"))
                if not os.path.isdir(top):
                    continue
                for dirpath, dirnames, _ in sorted(os.walk(top), key=lambda t: -len(t[0])):
                    try:
                        os.rmdir(dirpath)
                    except OSError as err:
                        problems.append(f"rmdir {dirpath}: {err.strerror}")

    def _kill_leftovers(self, problems):
        """Processes still naming our directory (shims, conmon): killed by pid."""
        for pid in _pids_mentioning(self.dir):
            problems.append(f"process {pid} still ran: {_cmdline(pid)[:200]}")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _remove_dir(self, problems):
        shutil.rmtree(self.dir, ignore_errors=True)
        if os.path.exists(self.dir):
            problems.append(f"{self.dir} could not be removed")


class Podman(_Engine):
    """podman on private storage, with berth-oci as its runtime."""

    name = "podman"

    def __init__(self):
        super().__init__()
        self.root = os.path.join(self.dir, "root")
        self.runroot = os.path.join(self.dir, "run")
        self.tmpdir = os.path.join(self.dir, "tmp")
        self.base = ["podman", "--root", self.root, "--runroot", self.runroot,
                     "--tmpdir", self.tmpdir, "--cgroup-manager", "cgroupfs",
                     "--events-backend", "file", "--runtime", self.runtime.path]

    def __call__(self, *args, check=True, timeout=60, input=None):
        return self.call([*self.base, *map(str, args)], check=check, timeout=timeout,
                         input=input)

    def run_args(self):
        """Flags every `podman run` of the tests takes."""
        return ["--network", "none", "--cgroup-parent", self.cgroup_parent]

    def close(self):
        problems = []
        for args in (("rm", "--all", "--force", "--time", "0"), ("rmi", "--all", "--force")):
            proc = self(*args, check=False, timeout=120)
            if proc.returncode != 0:
                problems.append(f"podman {' '.join(args)}: {proc.stderr.strip()}")
        self._kill_leftovers(problems)
        self._unmount_all(problems)
        self._remove_cgroups(problems, [self.cgroup_parent])
        self._remove_dir(problems)
        return problems


class Dockerd(_Engine):
    """A private dockerd with berth-oci registered as the runtime "berth"."""

    name = "docker"

    def __init__(self):
        super().__init__()
        self.socket = f"/run/{self.tag}.sock"
        self.host = f"unix://{self.socket}"
        self.data_root = os.path.join(self.dir, "data")
        self.exec_root = os.path.join(self.dir, "exec")
        self.pidfile = os.path.join(self.dir, "dockerd.pid")
        self.logfile = os.path.join(self.dir, "dockerd.log")
        self.proc = None

    def start(self, timeout=30):
        argv = ["dockerd", "--host", self.host, "--data-root", self.data_root,
                "--exec-root", self.exec_root, "--pidfile", self.pidfile,
                *self.network_args(),
                "--cgroup-parent", self.cgroup_parent, "--exec-opt",
                "native.cgroupdriver=cgroupfs", "--add-runtime",
                f"berth={self.runtime.path}"]
        with open(self.logfile, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log, cwd=self.dir,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"dockerd exited {self.proc.returncode}:\n{self.log()}")
            if os.path.exists(self.socket) and \
                    self("version", check=False, timeout=10).returncode == 0:
                return self
            time.sleep(0.1)
        raise AssertionError(f"dockerd not ready after {timeout} s:\n{self.log()}")

    def network_args(self):
        """dockerd's network flags: no bridge, no iptables (bench/net.py turns a bridge on)."""
        return ["--iptables=false", "--ip-masq=false", "--bridge=none"]

    def log(self, tail=40):
        try:
            with open(self.logfile, errors="replace") as f:
                return "".join(f.readlines()[-tail:])
        except FileNotFoundError:
            return ""

    def __call__(self, *args, check=True, timeout=60, input=None):
        return self.call(["docker", "-H", self.host, *map(str, args)], check=check,
                         timeout=timeout, input=input)

    def run_args(self):
        """Flags every `docker run` of the tests takes."""
        return ["--runtime", "berth", "--network", "none"]

    def close(self):
        problems = []
        if self.proc is not None and self.proc.poll() is None:
            ids = self("ps", "-aq", check=False, timeout=30).stdout.split()
            if ids:
                proc = self("rm", "-f", *ids, check=False, timeout=120)
                if proc.returncode != 0:
                    problems.append(f"docker rm -f: {proc.stderr.strip()}")
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                problems.append("dockerd did not stop on SIGTERM within 30 s; killed")
                self.proc.kill()
                self.proc.wait()
        self._kill_leftovers(problems)
        self._unmount_all(problems)
        self._remove_cgroups(problems, [self.cgroup_parent])
        for path in (self.socket,):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        self._remove_dir(problems)
        return problems


def serve(engine, rootfs, image):
    """Generator for a module fixture: start ``engine``, import ``rootfs`` as ``image``,
    yield the engine, then close it and fail on whatever the cleanup could not undo."""
    try:
        engine.start()
        engine.import_image(make_rootfs_tar(rootfs, os.path.join(engine.dir, "rootfs.tar")),
                            image)
        yield engine
    finally:
        problems = engine.close()
    assert not problems, f"{engine.name} cleanup: " + "; ".join(problems)


def freezer_state(pid):
    """freezer.state of the v1 freezer cgroup holding ``pid``."""
    with open(f"/proc/{pid}/cgroup") as f:
        path = next(line.split(":", 2)[2].strip() for line in f
                    if "freezer" in line.split(":")[1].split(","))
    with open(os.path.join(CGROUP_ROOT, "freezer", path.lstrip("/"), "freezer.state")) as f:
        return f.read().strip()


def _mounts_under(directory):
    prefix = directory.rstrip("/") + "/"
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            target = line.split()[4].replace("\\040", " ")
            if target == directory or target.startswith(prefix):
                out.append(target)
    return out


def _cgroup_hierarchies():
    try:
        names = os.listdir(CGROUP_ROOT)
    except FileNotFoundError:
        return []
    return [n for n in names if os.path.isdir(os.path.join(CGROUP_ROOT, n))
            and not os.path.islink(os.path.join(CGROUP_ROOT, n))]


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _pids_mentioning(text):
    me = os.getpid()
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != me and text in _cmdline(int(name)):
            out.append(int(name))
    return out


MEMORY_LIMIT = "/sys/fs/cgroup/memory/memory.limit_in_bytes"
# Doubles a shell string until the memory limit is hit.
GROW = "x=0123456789abcdef; while true; do x=$x$x; done"
# A shell that exits 0 on SIGTERM: proof that `stop` delivered the signal to the init.
TRAP_LOOP = 'trap "echo got-term; exit 0" TERM; echo started; while true; do sleep 0.1; done'


class DropInSuite:
    """Tests every engine must pass with berth-oci as its runtime (a conformance suite).

    A test file subclasses this as ``Test<Engine>`` and provides a class-scoped ``engine``
    fixture (an engine from this module, serving ``IMAGE``).
    """

    IMAGE = ""
    # Whether the engine's inspect shows OOMKilled: podman 4.3's conmon does not here,
    # with runc either (cgroup v1 hybrid host), so only the exit status is checked there.
    REPORTS_OOM_KILLED = True
    # Why `run --privileged` cannot work with this engine on this host, if it cannot.
    PRIVILEGED_BLOCKED = ""

    @pytest.fixture
    def looping(self, engine):
        """Starts detached containers running TRAP_LOOP; removes them afterwards."""
        names = []

        def start(name, *flags):
            engine.run("-d", "--name", name, *flags, self.IMAGE, "sh", "-c", TRAP_LOOP)
            names.append(name)
            return name

        yield start
        for name in names:
            engine("rm", "--force", name, check=False)

    def test_echo(self, engine):
        assert engine.run("--rm", self.IMAGE, "echo", "hi").stdout == "hi\n"
        verbs = engine.runtime.verbs()
        assert "create" in verbs and "start" in verbs, engine.runtime.report()

    def test_exit_code_passes_through(self, engine):
        proc = engine.run("--rm", self.IMAGE, "sh", "-c", "exit 3", check=False)
        assert proc.returncode == 3, proc.stderr + engine.runtime.report()

    def test_detached_exec_logs_stop_rm(self, engine):
        name = "dropin-trap"
        engine.run("-d", "--name", name, self.IMAGE, "sh", "-c", TRAP_LOOP)
        try:
            assert engine("exec", name, "echo", "from-exec").stdout == "from-exec\n"
            proc = engine("exec", name, "sh", "-c", "exit 5", check=False)
            assert proc.returncode == 5, proc.stderr + engine.runtime.report()
            assert "started" in engine("logs", name).stdout
            engine("stop", "--time", "30", name, timeout=60)
            # The trap ran and the shell exited 0: SIGTERM reached the init, no SIGKILL.
            assert engine.inspect(name, "{{.State.Status}} {{.State.ExitCode}}") \
                == "exited 0", engine.runtime.report()
            assert "got-term" in engine("logs", name).stdout
            engine("rm", name)
            assert name not in engine("ps", "-a", "--format", "{{.Names}}").stdout
        finally:
            engine("rm", "--force", name, check=False)

    def test_stop_kills_after_timeout(self, engine):
        name = "dropin-sleep"
        engine.run("-d", "--name", name, self.IMAGE, "sleep", "1000")
        try:
            engine("stop", "--time", "1", name, timeout=60)
            # As pid 1 with no handler, sleep ignores SIGTERM: stop must fall back to SIGKILL.
            assert engine.inspect(name, "{{.State.Status}} {{.State.ExitCode}}") \
                == "exited 137", engine.runtime.report()
        finally:
            engine("rm", "--force", name, check=False)

    def test_memory_limit_visible_inside(self, engine):
        proc = engine.run("--rm", "--memory", "32m", self.IMAGE, "cat", MEMORY_LIMIT)
        assert proc.stdout.strip() == str(32 * 1024 * 1024)

    def test_oom_kill_exits_137(self, engine):
        name = "dropin-oom"
        proc = engine.run("--name", name, "--memory", "32m", "--memory-swap", "32m",
                          self.IMAGE, "sh", "-c", GROW, check=False, timeout=120)
        try:
            assert proc.returncode == 137, proc.stderr + engine.runtime.report()
            want = "137 true" if self.REPORTS_OOM_KILLED else "137"
            fmt = "{{.State.ExitCode}} {{.State.OOMKilled}}" if self.REPORTS_OOM_KILLED \
                else "{{.State.ExitCode}}"
            assert engine.inspect(name, fmt) == want, engine.runtime.report()
        finally:
            engine("rm", "--force", name, check=False)

    def test_user(self, engine):
        proc = engine.run("--rm", "--user", "1000:1000", self.IMAGE, "id", check=False)
        assert proc.returncode == 0, proc.stderr + engine.runtime.report()
        assert proc.stdout.startswith("uid=1000"), proc.stdout

    def test_device(self, engine):
        proc = engine.run("--rm", "--device", "/dev/zero:/dev/berthzero", self.IMAGE,
                          "ls", "-l", "/dev/berthzero", check=False)
        assert proc.returncode == 0, proc.stderr + engine.runtime.report()
        assert proc.stdout.startswith("c") and "1,   5" in proc.stdout, proc.stdout

    def test_privileged(self, engine):
        if self.PRIVILEGED_BLOCKED:
            pytest.skip(self.PRIVILEGED_BLOCKED)
        proc = engine.run("--rm", "--privileged", self.IMAGE, "grep", "CapEff",
                          "/proc/self/status", check=False)
        assert proc.returncode == 0, proc.stderr + engine.runtime.report()
        with open("/proc/self/status") as f:
            mine = next(line for line in f if line.startswith("CapEff:"))
        assert proc.stdout.split() == mine.split(), proc.stdout

    def test_tty(self, engine):
        proc = engine.run("--rm", "-t", self.IMAGE, "tty", check=False)
        assert proc.returncode == 0, proc.stderr + engine.runtime.report()
        assert proc.stdout.startswith("/dev/pts/"), proc.stdout
        assert "--console-socket" in " ".join(engine.runtime.calls()), engine.runtime.report()
        name = "dropin-tty"
        engine.run("-d", "--name", name, self.IMAGE, "sleep", "1000")
        try:
            proc = engine("exec", "-t", name, "tty", check=False)
            assert proc.returncode == 0, proc.stderr + engine.runtime.report()
            assert proc.stdout.startswith("/dev/pts/"), proc.stdout
        finally:
            engine("rm", "--force", name, check=False)

    def test_stdin(self, engine):
        proc = engine.run("--rm", "-i", self.IMAGE, "cat", input="piped\n", check=False)
        assert (proc.returncode, proc.stdout) == (0, "piped\n"), \
            proc.stderr + engine.runtime.report()

    def test_pause_unpause(self, engine, looping):
        name = looping("dropin-pause")
        pid = int(engine.inspect(name, "{{.State.Pid}}"))
        engine("pause", name)
        assert engine.inspect(name, "{{.State.Status}}") == "paused"
        assert "pause" in engine.runtime.verbs(), engine.runtime.report()
        assert freezer_state(pid) == "FROZEN"
        engine("unpause", name)
        assert engine.inspect(name, "{{.State.Status}}") == "running"
        assert freezer_state(pid) == "THAWED"
        assert "resume" in engine.runtime.verbs(), engine.runtime.report()
        # Thawed for real: the container still answers.
        assert engine("exec", name, "echo", "awake").stdout == "awake\n"

    def test_update_memory(self, engine, looping):
        name = looping("dropin-update")
        engine("update", "--memory", "64m", "--memory-swap", "128m", name)
        proc = engine("exec", name, "cat", MEMORY_LIMIT)
        assert proc.stdout.strip() == str(64 * 1024 * 1024), engine.runtime.report()
        assert "update" in engine.runtime.verbs(), engine.runtime.report()
