"""The container commands around `run` (issue #4, points 4 and 7): `-it` through a real pty,
start -a -i, exec's flags, attach, wait, ps's filters and formats, inspect and stats
--format, rename, container prune --filter."""

import fcntl
import json
import os
import pty
import re
import select
import struct
import termios
import time

from tests.integration.berthcli import IMAGE, needs_berth_oci, wait_for

pytestmark = needs_berth_oci

P = f"c{os.getpid()}"


class Terminal:
    """`berth ARGS` on the slave side of a fresh pty, as a user at a terminal runs it."""

    def __init__(self, berth, *args, rows=24, cols=80):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            try:
                argv = berth.argv(*args)
                os.execve(argv[0], argv, berth.env)
            finally:
                os._exit(127)
        self.resize(rows, cols)
        self.seen = b""

    def resize(self, rows, cols):
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def type(self, text):
        os.write(self.fd, text.encode())

    def read_until(self, pattern, timeout=30):
        """Output until ``pattern`` (a regex) matches what was read so far; the match."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.seen)
            if found:
                return found
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise AssertionError(f"{pattern!r} not seen in {self.seen!r}")
            try:
                data = os.read(self.fd, 4096)
            except OSError:  # EIO: the slave side is closed
                data = b""
            if not data:
                raise AssertionError(f"{pattern!r} not seen before EOF in {self.seen!r}")
            self.seen += data
            if b"\x1b[6n" in data:
                # busybox's line editor asks where the cursor is; a terminal answers.
                self.type("\x1b[1;1R")

    def exit_code(self):
        """Drain the output and reap the CLI: its exit status."""
        while select.select([self.fd], [], [], 30)[0]:
            try:
                data = os.read(self.fd, 4096)
            except OSError:
                break
            if not data:
                break
            self.seen += data
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)

    def kill(self):
        try:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
        except ProcessLookupError:
            pass


def test_run_it_through_a_real_pty(berth):
    name = f"{P}-it"
    term = Terminal(berth, "run", "-it", "--name", name, IMAGE, "sh", rows=33, cols=77)
    try:
        term.read_until(rb"# ")
        term.type("stty size; echo $((6*7)); tty\r")
        term.read_until(rb"\n42\r?\n")
        assert b"33 77" in term.seen
        tty = term.read_until(rb"(/dev/pts/\d+)\r?\n").group(1)
        assert tty.startswith(b"/dev/pts/")
        # A resize of the user's terminal reaches the container's.
        term.resize(40, 100)
        os.kill(term.pid, 28)  # SIGWINCH, as the terminal sends on a resize
        term.type("sleep 0.5; stty size\r")
        term.read_until(rb"40 100")
        term.type("exit 3\r")
        assert term.exit_code() == 3
    finally:
        term.kill()
        berth("rm", "-f", name, check=False)


def test_exec_it_through_a_real_pty(berth):
    name = f"{P}-exit"
    berth("run", "-d", "--name", name, IMAGE, "sleep", "300")
    term = Terminal(berth, "exec", "-it", name, "sh")
    try:
        term.read_until(rb"# ")
        term.type("echo $((6*7)); tty; exit 3\r")
        term.read_until(rb"\n42\r?\n")
        term.read_until(rb"/dev/pts/\d+")
        assert term.exit_code() == 3
        # exec -t without a terminal on our side still gives the process one.
        assert re.fullmatch(r"/dev/pts/\d+\r?\n", berth("exec", "-t", name, "tty").stdout)
    finally:
        term.kill()
        berth("rm", "-f", name)


def test_detach_keys_leave_the_container_running(berth):
    name = f"{P}-dk"
    # A plain read loop: busybox sh's line editor would wait for a terminal's answers.
    loop = 'echo ready; while read l; do [ "$l" = quit ] && exit 6; echo "got $l"; done'
    term = Terminal(berth, "run", "-it", "--name", name, IMAGE, "sh", "-c", loop)
    try:
        term.read_until(rb"ready")
        term.type("one\r")
        term.read_until(rb"got one\r?\n")
        term.type("\x10\x11")  # ctrl-p ctrl-q
        assert term.exit_code() == 0
        assert berth("inspect", "-f", "{{.State.Status}}", name).stdout.strip() == "running"
    finally:
        term.kill()
    # attach again, with keys of our own this time; the loop goes on where we left it.
    term = Terminal(berth, "attach", "--detach-keys", "ctrl-x,a", name)
    try:
        term.type("two\r")
        term.read_until(rb"got two\r?\n")
        term.type("\x18a")
        assert term.exit_code() == 0
        term = Terminal(berth, "attach", name)
        term.type("quit\r")
        assert term.exit_code() == 6
    finally:
        term.kill()
        berth("rm", "-f", name)
    bad = berth("attach", "--detach-keys", "ctrl-", name, check=False)
    assert bad.returncode != 0


def test_start_attach_interactive(berth):
    name = f"{P}-start"
    berth("create", "-i", "--name", name, IMAGE, "sh", "-c", 'read l; echo "got $l"; exit 4')
    out = berth("start", "-a", "-i", name, input="hello\n", check=False)
    assert out.returncode == 4 and out.stdout == "got hello\n"
    assert berth("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip() == "4"
    # start -a of a container without -i just streams its output.
    berth("rm", name)
    berth("create", "--name", name, IMAGE, "sh", "-c", "echo out; echo err >&2; exit 2")
    out = berth("start", "-a", name, check=False)
    assert (out.returncode, out.stdout, out.stderr) == (2, "out\n", "err\n")
    # Several containers cannot share one terminal: refused before anything starts.
    two = berth("start", "-a", name, name, check=False)
    assert (two.returncode, two.stderr) == (
        1, "you cannot start and attach multiple containers at once\n")
    berth("rm", name)


def test_exec_flags(berth):
    name = f"{P}-exec"
    berth("run", "-d", "--name", name, "-e", "FROM_RUN=1", IMAGE, "sleep", "300")
    try:
        out = berth("exec", "-e", "A=x y", "-e", "FROM_RUN=2", "-u", "1000:1000", "-w", "/tmp",
                    name, "sh", "-c", 'echo "$A|$FROM_RUN|$(id -u):$(id -g)|$(pwd)"')
        assert out.stdout == "x y|2|1000:1000|/tmp\n"
        out = berth("exec", "-i", name, "sh", "-c", "cat; echo end", input="in\n")
        assert out.stdout == "in\nend\n"
        # Without -i the process gets no input.
        assert berth("exec", name, "cat", input="ignored\n").stdout == ""
        assert berth("exec", "-d", name, "sh", "-c", "sleep 0.2; echo done > /tmp/d").stdout == ""
        assert wait_for(lambda: berth("exec", name, "cat", "/tmp/d",
                                      check=False).stdout == "done\n")
        bad = berth("exec", "-w", "/no/such", name, "true", check=False)
        assert bad.returncode != 0 and "/no/such" in bad.stderr
        bad = berth("exec", "-u", "nosuchuser", name, "true", check=False)
        assert bad.returncode != 0 and "nosuchuser" in bad.stderr
        missing = berth("exec", name, "no-such-cmd", check=False)
        assert missing.returncode == 127 and "executable file not found" in missing.stderr
        missing = berth("exec", "-w", "/bin", name, "./nope", check=False)
        assert missing.returncode == 127 and "no such file or directory" in missing.stderr
        assert berth("exec", "-w", "/bin", name, "./true").returncode == 0
        assert berth("exec", "-e", "PATH=/nowhere", name, "true", check=False).returncode == 127
        cannot = berth("exec", name, "/etc", check=False)
        assert cannot.returncode == 126 and "permission denied" in cannot.stderr
        nobody = berth("exec", f"{name}-not-there", "true", check=False)
        assert nobody.returncode == 1 and "No such container" in nobody.stderr
    finally:
        berth("rm", "-f", name)


def test_attach_output_and_exit_code(berth):
    name = f"{P}-att"
    berth("run", "-d", "-i", "--name", name, IMAGE, "sh", "-c",
          'read l; echo "got $l"; echo warn >&2; exit 5')
    out = berth("attach", name, input="hi\n", check=False)
    assert out.returncode == 5
    assert out.stdout == "got hi\n" and out.stderr == "warn\n"
    gone = berth("attach", name, check=False)
    assert gone.returncode != 0 and "You cannot attach to a stopped container" in gone.stderr
    berth("rm", name)


def test_wait_for_several(berth):
    names = [f"{P}-w{i}" for i in range(3)]
    for i, name in enumerate(names):
        berth("run", "-d", "--name", name, IMAGE, "sh", "-c", f"sleep 0.{i + 2}; exit {i + 1}")
    try:
        assert berth("wait", *names).stdout.split() == ["1", "2", "3"]
        missing = berth("wait", names[0], "nothere", check=False)
        assert missing.returncode == 1 and missing.stdout.split() == ["1"]
        assert "No such container: nothere" in missing.stderr
    finally:
        berth("rm", "-f", *names)


def test_ps_filters_and_formats(berth):
    run_id = berth("run", "-d", "--name", f"{P}-up", "-l", "ps=1", "-l", "tier=web",
                   "--expose", "7000", IMAGE, "sleep", "300").stdout.strip()
    ok_id = berth("run", "-d", "--name", f"{P}-ok", "-l", "ps=1", "--network", "none", IMAGE,
                  "true").stdout.strip()
    bad_id = berth("run", "-d", "--name", f"{P}-bad", "-l", "ps=1", "-v", f"{P}-vol:/data",
                   IMAGE, "sh", "-c", "exit 3").stdout.strip()
    try:
        berth("wait", ok_id, bad_id)

        def ps(*args):
            return berth("ps", "--format", "{{.Names}}", *args).stdout.split()
        mine = ("--filter", "label=ps=1")
        assert sorted(ps("-a", *mine)) == sorted([f"{P}-up", f"{P}-ok", f"{P}-bad"])
        assert ps(*mine) == [f"{P}-up"]
        assert sorted(ps("-a", "--filter", "status=exited", *mine)) == [f"{P}-bad", f"{P}-ok"]
        assert ps("--filter", "status=running", *mine) == [f"{P}-up"]
        assert ps("-a", "--filter", "exited=3", *mine) == [f"{P}-bad"]
        assert ps("-a", "--filter", "exited=0", *mine) == [f"{P}-ok"]
        assert ps("-a", "--filter", f"name={P}-o") == [f"{P}-ok"]
        assert ps("-a", "--filter", "label=tier=web") == [f"{P}-up"]
        assert ps("-a", "--filter", "label=tier") == [f"{P}-up"]
        assert sorted(ps("-a", "--filter", f"ancestor={IMAGE}", *mine)) == sorted(
            [f"{P}-up", f"{P}-ok", f"{P}-bad"])
        assert ps("-a", "--filter", "ancestor=other:image", *mine) == []
        assert ps("-a", "--filter", f"id={bad_id[:12]}") == [f"{P}-bad"]
        assert sorted(ps("-a", "--filter", f"before={P}-bad", *mine)) == [f"{P}-ok", f"{P}-up"]
        assert sorted(ps("-a", "--filter", f"since={P}-up", *mine)) == [f"{P}-bad", f"{P}-ok"]
        assert ps("-a", "--filter", "network=none", *mine) == [f"{P}-ok"]
        assert ps("-a", "--filter", f"volume={P}-vol", *mine) == [f"{P}-bad"]
        assert ps("-a", "--filter", "volume=/data", *mine) == [f"{P}-bad"]
        assert ps("-a", "--filter", "expose=7000-7001", *mine) == [f"{P}-up"]
        assert ps("-a", "--filter", "expose=7000/udp", *mine) == []
        assert ps("-a", "--filter", "is-task=true", *mine) == []
        # -n: the last N created, whatever their state; latest first.
        assert ps("-n", "2") == [f"{P}-bad", f"{P}-ok"]
        assert berth("ps", "-q", "--no-trunc", *mine).stdout.split() == [run_id]
        assert berth("ps", "-q", *mine).stdout.split() == [run_id[:12]]
        table = berth("ps", "--no-trunc", *mine).stdout.splitlines()
        assert table[1].split()[0] == run_id and '"sleep 300"' in table[1]
        sized = berth("ps", "-s", *mine).stdout.splitlines()
        assert sized[0].split()[-1] == "SIZE" and "(virtual " in sized[1]
        out = berth("ps", "-a", "--format", "table {{.Names}}\t{{.Status}}\t{{.Labels}}",
                    "--filter", "exited=3").stdout.splitlines()
        assert out[0].split() == ["NAMES", "STATUS", "LABELS"]
        assert out[1].split()[:3] == [f"{P}-bad", "Exited", "(3)"] and "ps=1" in out[1]
        out = berth("ps", "--format", "{{json .}}", *mine).stdout
        assert json.loads(out)["Names"] == f"{P}-up"
        bad = berth("ps", "--filter", "colour=red", check=False)
        assert bad.returncode != 0 and "invalid filter 'colour'" in bad.stderr
        bad = berth("ps", "--filter", "status=sleepy", check=False)
        assert bad.returncode != 0 and "Invalid filter 'status=sleepy'" in bad.stderr
    finally:
        berth("rm", "-f", "-v", run_id, ok_id, bad_id)


def test_inspect_and_stats_format(berth):
    name = f"{P}-fmt"
    berth("run", "-d", "--name", name, "-m", "32m", "-e", "A=1", IMAGE, "sleep", "300")
    try:
        out = berth("inspect", "--format", "{{.State.Status}} {{json .Config.Env}}", name)
        status, env = out.stdout.strip().split(" ", 1)
        assert status == "running" and "A=1" in json.loads(env)
        out = berth("inspect", "-f", "{{.Name}} {{.HostConfig.Memory}}", name).stdout
        assert out == f"/{name} {32 << 20}\n"
        out = berth("stats", "--no-stream", "--format",
                    "{{.Name}}|{{.PIDs}}|{{.MemUsage}}|{{.CPUPerc}}", name).stdout.strip()
        got_name, pids, mem, cpu = out.split("|")
        assert got_name == name and pids == "1" and mem.endswith("/ 32MiB")
        assert cpu.endswith("%")
        out = berth("stats", "--no-stream", "--format", "table {{.Name}}\t{{.PIDs}}",
                    name).stdout.splitlines()
        assert out[0].split() == ["NAME", "PIDS"] and out[1].split() == [name, "1"]
    finally:
        berth("rm", "-f", name)


def test_rename(berth):
    a, b = f"{P}-ra", f"{P}-rb"
    berth("run", "-d", "--name", a, IMAGE, "sleep", "300")
    berth("create", "--name", b, IMAGE, "true")
    try:
        taken = berth("rename", a, b, check=False)
        assert taken.returncode == 1 and "is already in use" in taken.stderr
        bad = berth("rename", a, "no/slash", check=False)
        assert bad.returncode == 1 and "Invalid container name" in bad.stderr
        berth("rename", a, f"{P}-rc")
        assert berth("exec", f"{P}-rc", "true").returncode == 0
        gone = berth("exec", a, "true", check=False)
        assert "No such container" in gone.stderr
        assert berth("ps", "--format", "{{.Names}}", "--filter", f"name={P}-rc").stdout \
            == f"{P}-rc\n"
    finally:
        berth("rm", "-f", f"{P}-rc", b, a, check=False)


def test_container_prune_filters(berth):
    keep = berth("create", "--name", f"{P}-keep", IMAGE, "true").stdout.strip()
    big = berth("run", "-d", "--name", f"{P}-big", "-l", "big=1", IMAGE, "sh", "-c",
                "head -c 300000 /dev/zero > /blob").stdout.strip()
    berth("wait", big)
    out = berth("container", "prune", "-f", "--filter", "label=big").stdout
    assert big in out
    assert re.search(r"Total reclaimed space: 3\d\dkB\n$", out), out  # the 300 kB blob
    drop = berth("create", "--name", f"{P}-drop", "-l", "prunable=yes", IMAGE,
                 "true").stdout.strip()
    up = berth("run", "-d", "--name", f"{P}-up2", "-l", "prunable=yes", IMAGE,
               "sleep", "300").stdout.strip()
    try:
        out = berth("container", "prune", "-f", "--filter", "until=1h").stdout
        assert keep not in out and drop not in out
        out = berth("container", "prune", "-f", "--filter", "label=prunable=yes").stdout
        assert out.startswith("Deleted Containers:\n") and drop in out
        assert keep not in out and up not in out  # running containers are never pruned
        assert "Total reclaimed space:" in out
        ids = berth("ps", "-aq", "--no-trunc").stdout.split()
        assert keep in ids and up in ids and drop not in ids
        out = berth("container", "prune", "-f", "--filter", "label!=prunable").stdout
        assert keep in out
        bad = berth("container", "prune", "-f", "--filter", "colour=red", check=False)
        assert bad.returncode != 0 and "invalid filter 'colour'" in bad.stderr
    finally:
        berth("rm", "-f", keep, drop, up, big, check=False)
