"""`berth logs` flags end to end (-f, --tail, -t, --since, --until, --details) and `top`
with ps options, against real containers."""

import os
import subprocess
import time

from tests.integration.berthcli import IMAGE, needs_berth_oci

pytestmark = needs_berth_oci

P = f"lg{os.getpid()}"


def test_tail_timestamps_since_until_details(berth):
    name = f"{P}-lines"
    berth("run", "--name", name, "-l", "app=demo", "--log-opt", "labels=app", "-e", "K=v",
          "--log-opt", "env=K", IMAGE, "sh", "-c",
          "for i in 1 2 3 4 5; do echo line$i; sleep 0.2; done; echo oops >&2")
    out = berth("logs", name)
    assert out.stdout.split() == ["line1", "line2", "line3", "line4", "line5"]
    assert out.stderr == "oops\n"
    tail = berth("logs", "--tail", "2", name)  # the last two lines of both streams
    assert (tail.stdout, tail.stderr) == ("line5\n", "oops\n")
    assert berth("logs", "--tail", "3", name).stdout.split() == ["line4", "line5"]
    assert berth("logs", "-n", "all", name).stdout.count("line") == 5
    assert berth("logs", "--tail", "0", name).stdout == ""

    stamped = berth("logs", "-t", name).stdout.splitlines()
    stamps = [line.split(" ", 1)[0] for line in stamped]
    assert all(s.endswith("Z") and "T" in s for s in stamps)
    assert [line.split(" ", 1)[1] for line in stamped] == [f"line{i}" for i in range(1, 6)]
    assert berth("logs", "-t", name).stderr.split(" ", 1)[1] == "oops\n"
    # --since and --until take Docker's times: RFC 3339, Unix seconds, durations before now.
    # Lines a read of the monitor got together share a stamp: expect by the stamps.
    lines = [f"line{i}" for i in range(1, 6)]
    assert berth("logs", "--since", stamps[2], name).stdout.split() == \
        [line for line, s in zip(lines, stamps) if s >= stamps[2]]
    assert berth("logs", "--until", stamps[1], name).stdout.split() == \
        [line for line, s in zip(lines, stamps) if s <= stamps[1]]
    assert berth("logs", "--since", "10m", name).stdout.count("line") == 5
    assert berth("logs", "--since", str(int(time.time()) + 60), name).stdout == ""
    assert berth("logs", "--until", "1h", name).stdout == ""  # an hour ago: nothing yet
    assert berth("logs", "--since", str(time.time() - 600), name).stdout.count("line") == 5
    bad = berth("logs", "--since", "last tuesday", name, check=False)
    assert bad.returncode != 0 and "failed to parse value as time or duration" in bad.stderr

    details = berth("logs", "--details", "--tail", "2", name).stdout
    assert details == "K=v,app=demo line5\n"
    both = berth("logs", "--details", "-t", "--tail", "2", name).stdout
    assert both.split(" ", 1)[1] == "K=v,app=demo line5\n"
    berth("rm", name)


def test_follow_ends_when_the_container_stops(berth):
    name = f"{P}-follow"
    berth("run", "-d", "--name", name, IMAGE, "sh", "-c",
          "echo first; while [ ! -e /stop ]; do sleep 0.1; done; echo last")
    proc = subprocess.Popen(berth.argv("logs", "-f", name), env=berth.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "first\n"
        berth("exec", name, "touch", "/stop")
        assert proc.stdout.readline() == "last\n"
        assert proc.wait(timeout=60) == 0  # it ends on its own once the container is gone
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # -f on a stopped container prints what there is and ends.
    assert berth("logs", "-f", "--tail", "1", name).stdout == "last\n"
    berth("rm", "-f", name)


def test_top_with_ps_options(berth):
    name = f"{P}-top"
    berth("run", "-d", "--name", name, IMAGE, "sleep", "300")
    out = berth("top", name).stdout.splitlines()
    assert "PID" in out[0].split() and any("sleep 300" in line for line in out[1:])
    out = berth("top", name, "-o", "pid,comm").stdout.splitlines()
    assert out[0].split() == ["PID", "COMMAND"]
    assert [line.split()[1] for line in out[1:]] == ["sleep"]
    out = berth("top", name, "aux").stdout.splitlines()
    assert out[0].split()[:2] == ["USER", "PID"] and len(out) == 2
    bad = berth("top", name, "-o", "comm", check=False)
    assert bad.returncode != 0 and "Couldn't find PID field in ps output" in bad.stderr
    berth("rm", "-f", name)
