"""berth-oci exec and the rest of runc's flags callers use: checked from inside the container."""

import json
import os
import subprocess

import pytest

from tests.integration.test_oci_run import assert_nothing_left, sh


@pytest.fixture
def running(oci, make_bundle, container_id):
    bundle = make_bundle(args=["sleep", "1000"])
    oci("run", "-d", "--bundle", bundle, container_id)
    yield container_id
    oci("delete", "--force", container_id, check=False)


def test_exec_sees_the_containers_namespaces_and_env(oci, running):
    out = oci("exec", running, "sh", "-c", "echo $$ $(hostname); ps -o pid,comm | grep sleep")
    pid, host = out.stdout.split()[:2]
    assert host == "berth" and pid != "1"
    assert "1 sleep" in " ".join(out.stdout.split())


def test_exec_flags_env_cwd_user_caps(oci, running):
    out = oci("exec", "-e", "FOO=bar", "--cwd", "/tmp", "-u", "1000:1000",
              "--additional-gids", "7", running, "sh", "-c", "echo $FOO; pwd; id")
    assert out.stdout.split("\n")[:3] == ["bar", "/tmp", "uid=1000 gid=1000 groups=7"]
    caps = oci("exec", "--cap", "CAP_SYS_ADMIN", running, "grep", "CapEff", "/proc/self/status")
    assert int(caps.stdout.split()[1], 16) & (1 << 21)
    nnp = oci("exec", "--no-new-privs", running, "grep", "NoNewPrivs", "/proc/self/status")
    assert nnp.stdout.split()[1] == "1"


def test_exec_exit_codes_and_errors(oci, running):
    assert oci("exec", running, "sh", "-c", "exit 7", check=False).returncode == 7
    missing = oci("exec", running, "no-such-program", check=False)
    assert missing.returncode != 0
    assert "executable file not found" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    bad_cwd = oci("exec", "--cwd", "/nope", running, "true", check=False)
    assert bad_cwd.returncode != 0 and "process.cwd" in bad_cwd.stderr


def test_exec_process_json_detached_with_pid_file(oci, running, tmp_path):
    process = {"args": ["sh", "-c", "echo from-json > /dev/shm/out; sleep 100"],
               "cwd": "/", "env": ["PATH=/bin:/sbin"], "user": {"uid": 0, "gid": 0}}
    (tmp_path / "p.json").write_text(json.dumps(process))
    oci("exec", "--process", str(tmp_path / "p.json"), "--detach", "--pid-file",
        str(tmp_path / "pid"), running)
    pid = int((tmp_path / "pid").read_text())
    assert os.path.exists(f"/proc/{pid}")
    assert oci("exec", running, "cat", "/dev/shm/out").stdout == "from-json\n"
    # The exec'd process is in the container's cgroup, so kill --all reaches it.
    ps = json.loads(oci("ps", "--format", "json", running).stdout)
    assert pid in ps
    oci("kill", "--all", running, "KILL")


def test_exec_in_a_stopped_container_fails(oci, make_bundle, container_id):
    bundle = make_bundle(args=["true"])
    oci("run", "--keep", "--bundle", bundle, container_id)
    out = oci("exec", container_id, "true", check=False)
    assert out.returncode == 1 and "not running" in out.stderr
    oci("delete", container_id)
    assert_nothing_left(oci, container_id)


def test_joining_a_network_namespace_by_path(oci, make_bundle, container_id):
    name = f"berth-test-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "add", "probe0", "type", "veth",
                        "peer", "name", "probe1"], check=True)

        def mutate(config):
            for ns in config["linux"]["namespaces"]:
                if ns["type"] == "network":
                    ns["path"] = f"/run/netns/{name}"
        bundle = make_bundle(args=sh("cat /proc/net/dev"), mutate=mutate)
        out = oci("run", "--bundle", bundle, container_id)
        assert "probe0" in out.stdout
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_preserve_fds_passes_them_through(oci, make_bundle, container_id, tmp_path):
    bundle = make_bundle(args=sh("cat <&3"))
    (tmp_path / "input").write_text("through fd 3\n")
    # The runtime gets the file at fd 3 (bash puts it there), as a caller passing fds would.
    argv = " ".join(oci.argv("run", "--preserve-fds", "1", "--bundle", bundle, container_id))
    proc = subprocess.run(["bash", "-c", f"exec 3< {tmp_path / 'input'}; exec {argv}"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "through fd 3\n"


def test_systemd_cgroup_without_systemd_is_a_clear_error(oci, make_bundle, container_id):
    bundle = make_bundle(args=["true"])
    out = subprocess.run([*oci.prefix, "--root", oci.root, "--systemd-cgroup", "run",
                          "--bundle", str(bundle), container_id],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1 and "systemd" in out.stderr
    assert_nothing_left(oci, container_id)


def test_log_file_gets_json_errors(oci, make_bundle, container_id, tmp_path):
    log = tmp_path / "log.json"
    out = subprocess.run([*oci.prefix, "--root", oci.root, "--log", str(log),
                          "--log-format", "json", "state", "no-such-container"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    record = json.loads(log.read_text().splitlines()[-1])
    assert record["level"] == "error" and "no-such-container" in record["msg"]
    assert record["time"].endswith("Z")


def test_version_and_help(oci):
    out = subprocess.run([*oci.prefix, "--version"], capture_output=True, text=True)
    assert out.stdout.startswith("berth-oci version") and "spec: 1.2.0" in out.stdout
    bad = subprocess.run([*oci.prefix, "--no-such-flag"], capture_output=True, text=True)
    assert bad.returncode == 1 and "flag provided but not defined" in bad.stderr


def test_io_priority_scheduler_affinity_and_time_namespace(oci, make_bundle, container_id):
    def mutate(config):
        process = config["process"]
        process["ioPriority"] = {"class": "IOPRIO_CLASS_IDLE", "priority": 0}
        process["scheduler"] = {"policy": "SCHED_BATCH", "nice": 5}
        process["execCPUAffinity"] = {"final": "0"}
        config["linux"]["namespaces"].append({"type": "time"})
        config["linux"]["timeOffsets"] = {"boottime": {"secs": 86400 * 365, "nanosecs": 0}}
    bundle = make_bundle(args=sh("grep -E 'Cpus_allowed_list' /proc/self/status; "
                                 "cut -d' ' -f19,41 /proc/self/stat; cut -d. -f1 /proc/uptime"),
                         mutate=mutate)
    out = oci("run", "--bundle", bundle, container_id).stdout.split("\n")
    assert out[0].split() == ["Cpus_allowed_list:", "0"]
    nice, policy = out[1].split()
    assert (nice, policy) == ("5", "3")  # SCHED_BATCH
    assert int(out[2]) > 86400 * 365  # the boot clock moved forward a year
    bad = make_bundle(args=["true"], mutate=lambda c: c["process"].update(
        scheduler={"policy": "SCHED_DEADLINE"}))
    res = oci("run", "--bundle", bad, container_id + "x", check=False)
    assert res.returncode == 1 and "process.scheduler.policy" in res.stderr
