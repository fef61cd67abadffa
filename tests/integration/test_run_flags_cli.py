"""`berth run`'s flags (issue #4, point 4), each checked from inside a real busybox container
or through Docker's output."""

import json
import os
import signal
import time

import pytest

from tests.integration.berthcli import IMAGE, needs_berth_oci, wait_for

pytestmark = needs_berth_oci

PID = os.getpid()


def fmt(berth, template, name):
    return berth("inspect", "--format", template, name).stdout.strip()


def test_env_file_label_hostname(berth, tmp_path):
    env = tmp_path / "env"
    env.write_text("# a comment\nFOO=from file\n\nBAR\nEMPTY=\n")
    out = berth("run", "--rm", "--env-file", str(env), "-e", "BAR=cli", "--hostname", "h-box",
                IMAGE, "sh", "-c", 'echo "$FOO|$BAR|${EMPTY-unset}|$(hostname)"')
    assert out.stdout == "from file|cli||h-box\n"
    missing = berth("run", "--rm", "--env-file", str(tmp_path / "nope"), IMAGE, "true",
                    check=False)
    assert missing.returncode == 125 and "no such file or directory" in missing.stderr
    name = f"lab{PID}"
    berth("create", "--name", name, "-l", "a=1", "--label", "b", IMAGE, "true")
    labels = json.loads(fmt(berth, "{{json .Config.Labels}}", name))
    assert labels == {"a": "1", "b": ""}
    berth("rm", name)


def test_entrypoint(berth):
    out = berth("run", "--rm", "--entrypoint", "echo", IMAGE, "a", "b")
    assert out.stdout == "a b\n"
    # --entrypoint "" clears the image's entrypoint: the command runs on its own.
    out = berth("run", "--rm", "--entrypoint", "", IMAGE, "echo", "cleared")
    assert out.stdout == "cleared\n"
    name = f"ep{PID}"
    berth("create", "--name", name, "--entrypoint", "/bin/sh", IMAGE, "-c", "exit 0")
    assert fmt(berth, "{{json .Config.Entrypoint}}", name) == '["/bin/sh"]'
    assert fmt(berth, "{{.Path}} {{json .Args}}", name) == '/bin/sh ["-c","exit 0"]'
    berth("rm", name)


def test_init_is_pid_1_reaps_and_forwards(berth):
    name = f"init{PID}"
    script = ('trap "echo got-term; exit 7" TERM; '
              # an orphan: its parent exits at once, so it is reparented to pid 1
              'sh -c "sleep 0.2 & exit 0"; '
              'while true; do sleep 0.1; done')
    berth("run", "-d", "--init", "--name", name, IMAGE, "sh", "-c", script)
    try:
        comm = berth("exec", name, "cat", "/proc/1/comm").stdout.strip()
        assert comm != "sh" and comm != "sleep"
        ppid = berth("exec", name, "sh", "-c",
                     "for p in /proc/[0-9]*; do "
                     "grep -q 'trap' $p/cmdline 2>/dev/null && "
                     "awk '/^PPid/ {print $2}' $p/status; done; true").stdout.split()
        assert "1" in ppid
        # No zombie is left once the orphan's sleep ends.
        def no_zombies():
            states = berth("exec", name, "sh", "-c",
                           # processes come and go while cat reads: its status is moot
                           "cat /proc/[0-9]*/stat 2>/dev/null; true").stdout
            return all(line.split(") ", 1)[1][0] != "Z" for line in states.splitlines())
        assert wait_for(no_zombies)
        berth("kill", "-s", "TERM", name)
        assert berth("wait", name).stdout.strip() == "7"
        assert "got-term" in berth("logs", name).stdout
    finally:
        berth("rm", "-f", name)


def test_mount_bind_and_tmpfs(berth, tmp_path):
    src = tmp_path / "data"
    src.mkdir()
    (src / "f").write_text("host\n")
    out = berth("run", "--rm",
                "--mount", f"type=bind,source={src},target=/data,readonly",
                "--mount", "type=tmpfs,destination=/scratch,tmpfs-size=1m,tmpfs-mode=1770",
                IMAGE, "sh", "-c",
                "cat /data/f; touch /data/g 2>/dev/null && echo writable || echo ro; "
                "stat -c %a /scratch; grep ' /scratch ' /proc/mounts; "
                "touch /scratch/x && echo tmp-ok")
    lines = out.stdout.splitlines()
    assert lines[0] == "host" and lines[1] == "ro" and lines[2] == "1770"
    assert lines[3].split()[2] == "tmpfs" and "size=1024k" in lines[3]
    assert lines[4] == "tmp-ok"
    assert not (src / "g").exists()
    out = berth("run", "--rm", "--mount", f"type=bind,src={src},dst=/data", IMAGE,
                "sh", "-c", "echo new > /data/g")
    assert (src / "g").read_text() == "new\n"


def test_resource_limits_in_the_cgroup(berth):
    out = berth("run", "--rm", "-m", "64m", "--memory-swap", "128m", "--cpus", "1.5",
                "--cpu-shares", "512", "--cpuset-cpus", "0", "--pids-limit", "42",
                IMAGE, "sh", "-c",
                "cd /sys/fs/cgroup; cat memory/memory.limit_in_bytes "
                "memory/memory.memsw.limit_in_bytes cpu/cpu.cfs_quota_us "
                "cpu/cpu.cfs_period_us cpu/cpu.shares cpuset/cpuset.cpus pids/pids.max")
    assert out.stdout.split() == [str(64 << 20), str(128 << 20), "150000", "100000", "512",
                                  "0", "42"]
    # -1: unlimited swap.
    out = berth("run", "--rm", "-m", "64m", "--memory-swap", "-1", IMAGE, "cat",
                "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
    assert int(out.stdout) > 1 << 40


def test_ulimit(berth):
    out = berth("run", "--rm", "--ulimit", "nofile=512:1024", IMAGE, "sh", "-c",
                "ulimit -n; ulimit -Hn")
    assert out.stdout.split() == ["512", "1024"]
    out = berth("run", "--rm", "--ulimit", "nproc=77", IMAGE, "sh", "-c", "ulimit -u")
    assert out.stdout.strip() == "77"


def capeff(berth, *flags):
    out = berth("run", "--rm", *flags, IMAGE, "grep", "CapEff", "/proc/self/status")
    return int(out.stdout.split()[1], 16)


def test_capabilities_and_privileged(berth):
    default = capeff(berth)
    assert not default & (1 << 12)          # CAP_NET_ADMIN
    assert capeff(berth, "--cap-add", "NET_ADMIN") == default | (1 << 12)
    assert capeff(berth, "--cap-add", "CAP_SYS_TIME") & (1 << 25)
    with open("/proc/self/status") as f:  # every capability this host lets us hold
        bounding = int([line for line in f if line.startswith("CapBnd")][0].split()[1], 16)
    assert capeff(berth, "--privileged") == bounding
    devs = berth("run", "--rm", "--privileged", IMAGE, "ls", "/dev").stdout.split()
    assert "loop-control" in devs or any(d.startswith("tty") and d[3:].isdigit() for d in devs)
    plain = berth("run", "--rm", IMAGE, "ls", "/dev").stdout.split()
    assert len(devs) > len(plain)
    # A privileged container may write to /sys; a default one may not.
    assert berth("run", "--rm", IMAGE, "sh", "-c", "grep -q ' /sys .*ro[, ]' /proc/mounts",
                 check=False).returncode == 0
    assert berth("run", "--rm", "--privileged", IMAGE, "sh", "-c",
                 "grep -q ' /sys .*rw[, ]' /proc/mounts", check=False).returncode == 0


def test_security_opt(berth, tmp_path):
    nnp = "grep NoNewPrivs /proc/self/status"
    assert berth("run", "--rm", IMAGE, "sh", "-c", nnp).stdout.split()[1] == "0"
    out = berth("run", "--rm", "--security-opt", "no-new-privileges", IMAGE, "sh", "-c", nnp)
    assert out.stdout.split()[1] == "1"
    out = berth("run", "--rm", "--security-opt", "no-new-privileges:true", IMAGE, "sh", "-c",
                nnp)
    assert out.stdout.split()[1] == "1"
    seccomp = "grep Seccomp: /proc/self/status"
    assert berth("run", "--rm", IMAGE, "sh", "-c", seccomp).stdout.split()[1] == "2"
    out = berth("run", "--rm", "--security-opt", "seccomp=unconfined", IMAGE, "sh", "-c",
                seccomp)
    assert out.stdout.split()[1] == "0"
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                      "errnoRet": 1}]}))
    out = berth("run", "--rm", "--security-opt", f"seccomp={profile}", IMAGE, "sh", "-c",
                "mkdir /tmp/d 2>&1; echo rc=$?", check=False)
    assert "Operation not permitted" in out.stdout and "rc=1" in out.stdout
    bad = berth("run", "--rm", "--security-opt", f"seccomp={tmp_path}/none.json", IMAGE,
                "true", check=False)
    assert bad.returncode == 125 and "opening seccomp profile" in bad.stderr
    bad = berth("run", "--rm", "--security-opt", "bogus", IMAGE, "true", check=False)
    assert bad.returncode == 125 and "Invalid --security-opt" in bad.stderr


def test_stop_signal_and_timeout(berth):
    name = f"sig{PID}"
    script = ('trap "echo got-usr1" USR1; trap "echo got-term" TERM; '
              'echo ready; while true; do sleep 0.1; done')
    berth("run", "-d", "--name", name, "--stop-signal", "USR1", "--stop-timeout", "1",
          IMAGE, "sh", "-c", script)
    try:
        assert fmt(berth, "{{.Config.StopSignal}} {{.Config.StopTimeout}}", name) == "USR1 1"
        assert wait_for(lambda: "ready" in berth("logs", name).stdout)
        berth("stop", name)
        # USR1 was trapped and ignored: after the 1 s timeout SIGKILL ended it.
        assert berth("wait", name).stdout.strip() == "137"
        logs = berth("logs", name).stdout
        assert "got-usr1" in logs and "got-term" not in logs
    finally:
        berth("rm", "-f", name)
    bad = berth("run", "--rm", "--stop-signal", "NOPE", IMAGE, "true", check=False)
    assert bad.returncode == 125 and "Invalid signal: NOPE" in bad.stderr


def test_log_rotation(berth):
    name = f"rot{PID}"
    # 2000 lines of ~100 bytes, about 250 kB of json-file records: several 10k files.
    script = ('i=0; while [ $i -lt 2000 ]; do '
              'echo "line $i xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"; '
              'i=$((i+1)); done')
    cid = berth("run", "-d", "--name", name, "--log-opt", "max-size=10k",
                "--log-opt", "max-file=3", IMAGE, "sh", "-c", script).stdout.strip()
    try:
        assert berth("wait", name).stdout.strip() == "0"
        path = fmt(berth, "{{.LogPath}}", name)
        assert cid in path
        d = os.path.dirname(path)
        logs = sorted(f for f in os.listdir(d) if f.startswith(os.path.basename(path)))
        assert logs == [os.path.basename(path) + s for s in ("", ".1", ".2")]
        for f in logs:
            assert os.path.getsize(os.path.join(d, f)) <= 10 * 1024 + 300
            with open(os.path.join(d, f)) as fh:
                first = json.loads(fh.readline())
            assert first["stream"] == "stdout" and first["time"].endswith("Z")
        out = berth("logs", name).stdout.splitlines()
        assert out[-1].startswith("line 1999 ")
        numbers = [int(line.split()[1]) for line in out]
        assert numbers == list(range(numbers[0], 2000)) and numbers[0] > 0
        assert len(berth("logs", "--tail", "5", name).stdout.splitlines()) == 5
        opts = json.loads(fmt(berth, "{{json .HostConfig.LogConfig}}", name))
        assert opts == {"Type": "json-file", "Config": {"max-size": "10k", "max-file": "3"}}
    finally:
        berth("rm", "-f", name)
    bad = berth("run", "--rm", "--log-opt", "max-size=lots", IMAGE, "true", check=False)
    assert bad.returncode == 125 and "invalid size: 'lots'" in bad.stderr


def restarts(berth, name):
    return int(fmt(berth, "{{.RestartCount}}", name))


@pytest.mark.parametrize("policy", ["always", "unless-stopped"])
def test_restart_policies_restart_but_not_after_stop(berth, policy):
    name = f"rs{policy[:3]}{PID}"
    berth("run", "-d", "--name", name, "--restart", policy, IMAGE, "sh", "-c",
          "echo run; sleep 0.3; exit 3")
    try:
        assert wait_for(lambda: restarts(berth, name) >= 2, timeout=60)
        assert fmt(berth, "{{.HostConfig.RestartPolicy.Name}}", name) == policy
        berth("stop", "-t", "1", name)
        assert fmt(berth, "{{.State.Status}}", name) == "exited"
        count = restarts(berth, name)
        time.sleep(2)
        assert fmt(berth, "{{.State.Status}}", name) == "exited"
        assert restarts(berth, name) == count
    finally:
        berth("rm", "-f", name)


def test_attach_streams(berth):
    script = "echo to-out; echo to-err >&2"
    out = berth("run", "--rm", "-a", "stdout", IMAGE, "sh", "-c", script)
    assert out.stdout == "to-out\n" and out.stderr == ""
    out = berth("run", "--rm", "-a", "stderr", IMAGE, "sh", "-c", script)
    assert out.stdout == "" and out.stderr == "to-err\n"
    out = berth("run", "--rm", "-i", "-a", "stdin", "-a", "stdout", IMAGE, "cat",
                input="piped\n")
    assert out.stdout == "piped\n"
    bad = berth("run", "-a", "stdlog", IMAGE, "true", check=False)
    assert bad.returncode == 125 and "valid streams are STDIN, STDOUT and STDERR" in bad.stderr
    bad = berth("run", "-d", "-a", "stdout", IMAGE, "true", check=False)
    assert bad.returncode == 125 and "Conflicting options: -a and -d" in bad.stderr


@pytest.mark.parametrize("args, words", [
    (["-m", "lots"], "invalid argument \"lots\" for \"-m, --memory\" flag"),
    (["--memory-swap", "1x"], "invalid argument \"1x\" for \"--memory-swap\" flag"),
    (["-m", "64m", "--memory-swap", "32m"],
     "Minimum memoryswap limit should be larger than memory limit"),
    (["--cpus", "many"], "invalid argument \"many\" for \"--cpus\" flag"),
    (["--cpus", "99999"], "Range of CPUs is from 0.01 to"),
    (["--cpu-shares", "x"], "invalid argument \"x\" for \"-c, --cpu-shares\" flag"),
    (["--cpuset-cpus", "0-z"], "Invalid value 0-z for cpuset cpus"),
    (["--cpuset-cpus", "0,4096"], "Requested CPUs are not available - requested 0,4096"),
    (["--ulimit", "nofile"], "invalid argument \"nofile\" for \"--ulimit\" flag"),
    (["--ulimit", "bogus=1"], "invalid ulimit type: bogus"),
    (["--ulimit", "nofile=2048:1024"], "ulimit soft limit must be less than or equal to hard"),
    (["--mount", "type=bind,target=/x"], "field Source must not be empty"),
    (["--mount", "type=bind,source=/no/such/dir,target=/x"],
     "bind source path does not exist: /no/such/dir"),
    (["--mount", "type=magic,target=/x"], "invalid"),
    (["--mount", "type=tmpfs,target=/x,tmpfs-size=big"], "invalid"),
    (["--restart", "sometimes"], "invalid restart policy"),
    (["--restart", "on-failure:x"], "maximum retry count must be an integer"),
    (["--rm", "--restart", "always"],
     "conflicting options: cannot specify both --restart and --rm"),
    (["--pids-limit", "x"], "invalid argument \"x\" for \"--pids-limit\" flag"),
    (["--cap-add", "NOT_A_CAP"], "unknown capability: \"CAP_NOT_A_CAP\""),
])
def test_bad_values_are_refused_with_125(berth, args, words):
    before = berth("ps", "-aq").stdout
    out = berth("run", *args, IMAGE, "true", check=False)
    assert out.returncode == 125, out
    assert words in out.stderr, out.stderr
    assert out.stderr.count("\n") <= 2
    assert "Traceback" not in out.stderr
    assert berth("ps", "-aq").stdout == before


def test_kill_with_a_signal(berth):
    name = f"kill{PID}"
    berth("run", "-d", "--name", name, IMAGE, "sh", "-c",
          'trap "echo hup" HUP; trap "exit 9" USR2; echo ready; '
          'while true; do sleep 0.1; done')
    try:
        assert wait_for(lambda: "ready" in berth("logs", name).stdout)
        berth("kill", "-s", "HUP", name)
        assert wait_for(lambda: "hup" in berth("logs", name).stdout)
        assert fmt(berth, "{{.State.Status}}", name) == "running"
        berth("kill", "--signal", str(int(signal.SIGUSR2)), name)
        assert berth("wait", name).stdout.strip() == "9"
        bad = berth("kill", "-s", "NOPE", name, check=False)
        assert bad.returncode != 0 and "Invalid signal: NOPE" in bad.stderr
    finally:
        berth("rm", "-f", name)


def test_logs_follow_across_rotations(berth):
    name = f"rotf{PID}"
    # ~60 kB of records in pauses: the follower sees several rotations of 8k files.
    script = ('i=0; while [ $i -lt 600 ]; do '
              'echo "n $i yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"; i=$((i+1)); '
              '[ $((i % 50)) -eq 0 ] && sleep 0.05; done')
    berth("run", "-d", "--name", name, "--log-opt", "max-size=8k", "--log-opt", "max-file=4",
          IMAGE, "sh", "-c", script)
    try:
        out = berth("logs", "-f", name).stdout.splitlines()
        numbers = [int(line.split()[1]) for line in out]
        # The follower may start after the first rotations; from there on nothing is lost.
        assert numbers[-1] == 599 and numbers == list(range(numbers[0], 600))
        path = fmt(berth, "{{.LogPath}}", name)
        assert os.path.exists(path + ".1")
    finally:
        berth("rm", "-f", name)
