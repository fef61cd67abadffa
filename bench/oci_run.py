"""Start-up time of berth-oci against runc (and crun when installed).

One bundle (busybox rootfs, args ["/bin/true"], berth's default config without a
terminal), each runtime with its own --root, runs interleaved so drift hits all alike:
  run      `RUNTIME run ID` (the container is deleted when it exits)
  lifecycle `create ID`, `start ID`, `state ID` until stopped, `delete ID`
Prints a markdown table and writes it as a dated section of bench/RESULTS.md.

usage: oci_run.py [-n N] [--warmup W] [--only berth,runc,crun] [--results PATH] [--no-write]
"""
import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tools"))

import ocikit  # noqa: E402

OUT = os.path.join(HERE, "out")
ROOTFS = os.path.join(REPO, "build", "rootfs", "busybox")
SECTION = "## berth-oci start time — "


class BenchError(Exception):
    pass


class Runtime:
    """One OCI runtime binary with its own state directory."""

    def __init__(self, name, prefix, env, root):
        self.name = name
        self.prefix = prefix
        self.env = env
        self.root = root
        self.seq = 0

    def call(self, *args, capture=False):
        """Run one command; stdio never a pipe the container could hold open.

        posix_spawn keeps the harness's own cost per call small and the same for every
        runtime (a fork of this process would cost more than some of what is measured)."""
        argv = [*self.prefix, "--root", self.root, *args]
        out_path = self.root + ".out"
        err_path = self.root + ".err"
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, out_path if capture else os.devnull,
             os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
            (os.POSIX_SPAWN_OPEN, 2, err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
        ]
        pid = os.posix_spawn(argv[0], argv, self.env, file_actions=actions)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            with open(err_path, errors="replace") as f:
                msg = f.read().strip()
            raise BenchError(f"{' '.join(argv)} exited {code}: {msg}")
        if capture:
            with open(out_path, "rb") as f:
                return f.read()
        return None

    def next_id(self):
        self.seq += 1
        return f"bench-{os.getpid()}-{self.seq}"

    def run_once(self, bundle):
        cid = self.next_id()
        t0 = time.perf_counter()
        self.call("run", "--bundle", bundle, cid)
        return time.perf_counter() - t0

    def lifecycle_once(self, bundle):
        cid = self.next_id()
        t0 = time.perf_counter()
        pid_file = os.path.join(self.root, cid + ".pid")
        self.call("create", "--bundle", bundle, "--pid-file", pid_file, cid)
        with open(pid_file) as f:
            pid = int(f.read())
        self.call("start", cid)
        wait_exit(pid)
        self.call("delete", cid)
        os.unlink(pid_file)
        return time.perf_counter() - t0

    def leftovers(self):
        out = self.call("list", "-q", capture=True).decode()
        return [line for line in out.split() if line]

    def cleanup(self):
        for cid in self.leftovers():
            self.call("delete", "--force", cid)


def wait_exit(pid):
    """Wait for a process that is not our child to end (a pidfd turns readable)."""
    import select

    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        select.select([fd], [], [], 30)
    finally:
        os.close(fd)


def first_line(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
    except OSError:
        return "?"
    return out.splitlines()[0] if out else "?"


def find_runtimes(only):
    found = {}
    prefix, env = ocikit.berth_oci_command()
    found["berth"] = (prefix, env, "berth-oci " + " ".join(prefix))
    for name in ("runc", "crun"):
        path = shutil.which(name)
        if path:
            found[name] = ([path], dict(os.environ), first_line([path, "--version"]))
    wanted = only or list(found)
    missing = [n for n in wanted if n not in found]
    if missing:
        raise BenchError(f"runtime not found: {', '.join(missing)}")
    return {n: found[n] for n in wanted}


def measure(runtimes, bundle, what, n, warmup):
    """Interleaved samples (seconds) of one measurement for every runtime."""
    step = {"run": Runtime.run_once, "lifecycle": Runtime.lifecycle_once}[what]
    samples = {rt.name: [] for rt in runtimes}
    for i in range(warmup + n):
        for rt in runtimes:
            t = step(rt, bundle)
            if i >= warmup:
                samples[rt.name].append(t)
    return samples


def table(results, names):
    """Markdown: one row per runtime, median/mean ms per measurement, ratios to runc."""
    lines = ["| runtime | run median ms | run mean ms | create+start+delete median ms"
             " | create+start+delete mean ms |",
             "| --- | ---: | ---: | ---: | ---: |"]
    stats = {}
    for name in names:
        row = []
        for what in ("run", "lifecycle"):
            xs = results[what][name]
            med, mean = statistics.median(xs) * 1e3, statistics.fmean(xs) * 1e3
            stats[name, what] = (med, mean)
            row += [f"{med:.1f}", f"{mean:.1f}"]
        label = "berth-oci" if name == "berth" else name
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    if "runc" in names:
        for name in names:
            if name == "runc":
                continue
            ratios = []
            for what in ("run", "lifecycle"):
                for k in (0, 1):
                    ratios.append(f"{stats[name, what][k] / stats['runc', what][k]:.2f}")
            label = "berth-oci" if name == "berth" else name
            lines.append(f"| {label}/runc | " + " | ".join(ratios) + " |")
    return "\n".join(lines)


def write_dated(path, section, body):
    """``body`` under today's "``section``<date>" heading (see write_section)."""
    write_section(path, section + datetime.date.today().isoformat(), body)


def write_section(path, heading, body):
    """Put `heading` + body into the markdown file, replacing a section with that heading."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        text = "# Benchmark results\n\nWritten by the benches in bench/ (`make bench`).\n"
    lines = text.rstrip("\n").split("\n")
    section = [heading, "", *body.rstrip("\n").split("\n")]
    if heading in lines:
        start = lines.index(heading)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
                   len(lines))
        while end > start and not lines[end - 1].strip():
            end -= 1
        lines[start:end] = section
    else:
        lines += ["", *section]
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(path + ".tmp", path)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=50, help="measured iterations per runtime")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--only", default="", help="comma-separated: berth,runc,crun")
    ap.add_argument("--results", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--no-write", action="store_true", help="print only")
    opts = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("oci_run: needs root", file=sys.stderr)
        return 1
    only = [n for n in opts.only.split(",") if n]
    try:
        found = find_runtimes(only)
        subprocess.run([os.path.join(REPO, "tools", "mkrootfs-busybox.sh"), ROOTFS], check=True)
        os.makedirs(OUT, exist_ok=True)
        work = tempfile.mkdtemp(prefix="oci-run-", dir=OUT)
        bundle = ocikit.make_bundle(os.path.join(work, "bundle"), ROOTFS, args=["/bin/true"])
        runtimes = []
        for name, (prefix, env, _) in found.items():
            root = os.path.join(work, f"state-{name}")
            os.makedirs(root)
            runtimes.append(Runtime(name, prefix, env, root))
        results = {}
        try:
            for what in ("run", "lifecycle"):
                print(f"oci_run: {what}: {opts.warmup} warm-ups + {opts.n} runs each of "
                      f"{', '.join(found)}", file=sys.stderr, flush=True)
                results[what] = measure(runtimes, bundle, what, opts.n, opts.warmup)
            for rt in runtimes:
                left = rt.leftovers()
                if left:
                    raise BenchError(f"{rt.name} left containers behind: {left}")
        finally:
            for rt in runtimes:
                try:
                    rt.cleanup()
                except BenchError as err:
                    print(f"oci_run: cleanup: {err}", file=sys.stderr)
    except BenchError as err:
        print(f"oci_run: {err}", file=sys.stderr)
        return 1
    shutil.rmtree(work, ignore_errors=True)

    body = [
        f"Machine: {os.cpu_count()} cores, kernel {platform.release()}, "
        f"Python {platform.python_version()} ({sys.executable}).",
        f"Each runtime: {opts.warmup} warm-ups then {opts.n} measured iterations, "
        "interleaved; bundle = busybox rootfs, `/bin/true`, default config, no terminal.",
        "`create+start+delete` waits for the init's exit through a pidfd (no runtime call), then deletes.",
        "",
        table(results, list(found)),
        "",
        *(f"- {('berth-oci' if n == 'berth' else n)}: {desc}" for n, (_, _, desc) in found.items()),
    ]
    if "berth" not in found:
        body.insert(0, "berth-oci not measured in this run (harness check).\n")
    text = "\n".join(body)
    print(text)
    if not opts.no_write:
        write_dated(opts.results, SECTION, text)
        print(f"\noci_run: wrote {os.path.relpath(opts.results)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
