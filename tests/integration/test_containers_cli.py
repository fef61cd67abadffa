"""berth's container commands end to end, from a busybox image imported locally."""

import json
import os
import signal
import subprocess
import tarfile
import time

from tests.integration.berthcli import IMAGE, needs_berth_oci

pytestmark = needs_berth_oci


def test_run_output_and_exit_codes(berth):
    out = berth("run", "--rm", IMAGE, "echo", "hello")
    assert out.stdout == "hello\n"
    assert berth("run", "--rm", IMAGE, "sh", "-c", "exit 3", check=False).returncode == 3
    # pid 1 ignores a SIGKILL from inside its namespace: a child kills itself instead.
    killed = berth("run", "--rm", IMAGE, "sh", "-c", 'sh -c "kill -9 \\$\\$"; exit $?',
                   check=False)
    assert killed.returncode == 137
    missing = berth("run", "--rm", IMAGE, "no-such-command", check=False)
    assert missing.returncode == 127
    assert "executable file not found" in missing.stderr
    assert missing.stderr.count("\n") == 1
    notexec = berth("run", "--rm", IMAGE, "/etc/passwd", check=False)
    assert notexec.returncode == 126
    badflag = berth("run", "--no-such-flag", IMAGE, check=False)
    assert badflag.returncode == 125 and "unknown flag: --no-such-flag" in badflag.stderr
    noimage = berth("run", "--rm", "--pull", "never", "nothere:1", "true", check=False)
    assert noimage.returncode == 125 and "No such image" in noimage.stderr
    assert berth("ps", "-aq").stdout.strip() == ""


def test_run_flags_reach_the_process(berth):
    out = berth("run", "--rm", "-e", "FOO=bar", "-w", "/tmp", "-u", "1000:1000",
                "--hostname", "box", IMAGE, "sh", "-c",
                "echo $FOO $(pwd) $(id -u):$(id -g) $(hostname)")
    assert out.stdout.split() == ["bar", "/tmp", "1000:1000", "box"]
    mem = berth("run", "--rm", "-m", "64m", IMAGE, "cat",
                "/sys/fs/cgroup/memory/memory.limit_in_bytes")
    assert mem.stdout.strip() == str(64 << 20)
    ro = berth("run", "--rm", "--read-only", IMAGE, "touch", "/x", check=False)
    assert ro.returncode != 0
    caps = berth("run", "--rm", "--cap-drop", "ALL", IMAGE, "grep", "CapEff",
                 "/proc/self/status")
    assert caps.stdout.split()[1] == "0000000000000000"
    etc = berth("run", "--rm", IMAGE, "cat", "/etc/hostname", "/etc/hosts")
    assert "127.0.0.1\tlocalhost" in etc.stdout


def test_detached_ps_logs_stop_rm(berth):
    script = 'echo started; trap "echo bye; exit 0" TERM; while true; do sleep 0.1; done'
    cid = berth("run", "-d", "--name", "web", IMAGE, "sh", "-c", script).stdout.strip()
    assert len(cid) == 64
    deadline = time.monotonic() + 10
    while "started" not in berth("logs", "web").stdout and time.monotonic() < deadline:
        time.sleep(0.05)
    ps = berth("ps").stdout.splitlines()
    assert ps[0].split()[:2] == ["CONTAINER", "ID"] and "web" in ps[1]
    assert ps[1].split()[0] == cid[:12] and "Up" in ps[1]
    dup = berth("run", "-d", "--name", "web", IMAGE, "true", check=False)
    assert dup.returncode == 125 and 'The container name "/web" is already in use' in dup.stderr
    assert berth("stop", "web").stdout.strip() == "web"
    assert berth("logs", "web").stdout.split() == ["started", "bye"]
    assert "Exited (0)" in berth("ps", "-a").stdout
    stamped = berth("logs", "-t", "web").stdout.splitlines()[0]
    assert stamped.split(" ", 1)[0].endswith("Z") and stamped.endswith("started")
    assert berth("rm", "web").stdout.strip() == "web"
    assert berth("ps", "-aq").stdout.strip() == ""
    assert not os.path.exists(f"/sys/fs/cgroup/memory/berth/{cid}")


def test_rm_of_a_running_container_needs_force(berth):
    cid = berth("run", "-d", IMAGE, "sleep", "100").stdout.strip()
    refused = berth("rm", cid, check=False)
    assert refused.returncode == 1 and "container is running" in refused.stderr
    berth("rm", "-f", cid)
    assert berth("ps", "-aq").stdout.strip() == ""


def test_kill_wait_and_restart_policy(berth):
    cid = berth("run", "-d", IMAGE, "sleep", "100").stdout.strip()
    berth("kill", cid)
    assert berth("wait", cid).stdout.strip() == "137"
    berth("rm", cid)
    cid = berth("run", "-d", "--restart", "on-failure:2", IMAGE, "sh", "-c", "exit 5").stdout
    cid = cid.strip()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        state = berth("ps", "-a", "--format", "{{.Status}}").stdout
        if "Exited (5)" in state:
            break
        time.sleep(0.1)
    assert "Exited (5)" in state
    berth("rm", cid)


def test_the_container_survives_a_killed_cli(berth):
    proc = subprocess.Popen(berth.argv("run", "--name", "survivor", IMAGE, "sleep", "100"),
                            env=berth.env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while "survivor" not in berth("ps").stdout and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert "Up" in berth("ps", "--filter", "name=survivor").stdout
    berth("rm", "-f", "survivor")


def test_inspect_a_container_and_an_image(berth):
    cid = berth("run", "-d", "--name", "insp", "-e", "A=1", IMAGE, "sleep", "100").stdout.strip()
    info = json.loads(berth("inspect", "insp").stdout)[0]
    assert info["Id"] == cid and info["Name"] == "/insp"
    assert info["State"]["Running"] is True and info["State"]["Pid"] > 0
    assert info["Path"] == "sleep" and info["Args"] == ["100"]
    assert "A=1" in info["Config"]["Env"]
    assert berth("inspect", "--format", "{{.State.Status}}", "insp").stdout.strip() == "running"
    image = json.loads(berth("inspect", "--type", "image", IMAGE).stdout)[0]
    assert image["Id"] == info["Image"]
    missing = berth("inspect", "nothing-here", check=False)
    assert missing.returncode == 1 and "No such object: nothing-here" in missing.stderr
    berth("rm", "-f", "insp")


def test_export_a_containers_filesystem(berth, tmp_path):
    cid = berth("run", "-d", IMAGE, "sh", "-c", "echo made > /made-here; sleep 100").stdout
    cid = cid.strip()
    deadline = time.monotonic() + 10
    out = tmp_path / "fs.tar"
    while time.monotonic() < deadline:
        berth("export", "-o", str(out), cid)
        with tarfile.open(out) as t:
            names = t.getnames()
            if "made-here" in names:
                assert t.extractfile("made-here").read() == b"made\n"
                break
        time.sleep(0.05)
    assert "made-here" in names and "bin/busybox" in names
    berth("rm", "-f", cid)


def test_exec_pause_top_rename_prune(berth):
    cid = berth("run", "-d", "--name", "ops", "-e", "X=1", IMAGE, "sleep", "100").stdout.strip()
    out = berth("exec", "-e", "Y=2", "-w", "/tmp", "ops", "sh", "-c", "echo $X $Y $(pwd)")
    assert out.stdout.split() == ["1", "2", "/tmp"]
    assert berth("exec", "ops", "sh", "-c", "exit 4", check=False).returncode == 4
    assert berth("exec", "-u", "nobody", "ops", "id", "-u").stdout.strip() == "65534"
    top = berth("top", "ops").stdout.splitlines()
    assert "PID" in top[0] and any("sleep 100" in line for line in top[1:])
    berth("pause", "ops")
    assert "(Paused)" in berth("ps").stdout
    assert berth("exec", "ops", "true", check=False).returncode != 0
    berth("unpause", "ops")
    assert "(Paused)" not in berth("ps").stdout
    berth("rename", "ops", "ops2")
    assert berth("inspect", "--format", "{{.Name}}", cid).stdout.strip() == "/ops2"
    berth("stop", "-t", "0", "ops2")
    out = berth("container", "prune", "-f").stdout
    assert cid in out
    assert berth("ps", "-aq").stdout.strip() == ""


def test_stats_and_attach(berth):
    cid = berth("run", "-d", "-m", "32m", IMAGE, "sh", "-c",
                "sleep 0.5; echo tick; sleep 100").stdout.strip()
    out = berth("stats", "--no-stream", cid).stdout.splitlines()
    assert out[0].split()[:3] == ["CONTAINER", "ID", "NAME"]
    assert out[1].split()[0] == cid[:12] and "32MiB" in out[1]
    proc = subprocess.Popen(berth.argv("attach", "--no-stdin", cid), env=berth.env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 10
        # Under load the attach may connect after both writes: write until it sees one.
        import select
        line = ""
        while not line and time.monotonic() < deadline + 20:
            berth("exec", cid, "sh", "-c", "echo later > /proc/1/fd/1")
            if select.select([proc.stdout], [], [], 1)[0]:
                line = proc.stdout.readline()
        assert line.strip() in ("tick", "later")
    finally:
        berth("rm", "-f", cid)
        proc.wait(timeout=30)
    assert time.monotonic() < deadline + 30
