"""berth-oci runs real busybox containers; every check is made from inside the container.

Each test runs `berth-oci run` in the foreground and reads what a shell inside printed:
pid 1 and the namespaces, mounts and propagation, a read-only root with masked and
read-only paths, /dev, capabilities, the user, rlimits, cgroup limits (memory, OOM, pids).
The helpers here are shared by the other test_oci_* files.
"""
import glob
import os
import shutil
import subprocess
import tempfile

import pytest

from berth.spec import caps as spec_caps

CGROUP_ROOT = "/sys/fs/cgroup"


# ---- helpers shared by test_oci_*.py

def sh(script):
    return ["/bin/sh", "-c", script]


def add_mount(config, destination, type_="tmpfs", source="tmpfs", options=()):
    config["mounts"].append({"destination": destination, "type": type_, "source": source,
                             "options": list(options)})


def with_tmp(config):
    """A writable /tmp (tmpfs) in a read-only rootfs."""
    add_mount(config, "/tmp", options=["mode=1777"])


def chain(*fns):
    def mutate(config):
        for fn in fns:
            if fn is not None:
                fn(config)
    return mutate


def run_sh(oci, make_bundle, container_id, script, *, mutate=None, readonly=True, check=True):
    """Run `sh -c SCRIPT` in a fresh container in the foreground; the CompletedProcess."""
    bundle = make_bundle(args=sh(script), mutate=mutate, readonly=readonly)
    return oci("run", "--bundle", bundle, container_id, check=check)


def cgroup_dirs(container_id):
    """Every cgroup directory named after CONTAINER_ID in any hierarchy."""
    pattern = os.path.join(CGROUP_ROOT, "*", "berth-oci", container_id)
    found = glob.glob(pattern) + glob.glob(os.path.join(CGROUP_ROOT, "berth-oci", container_id))
    return sorted(found)


def assert_nothing_left(oci, container_id):
    assert container_id not in oci.container_ids()
    assert not os.path.exists(os.path.join(oci.root, container_id))
    assert cgroup_dirs(container_id) == []


def one_line_error(proc, *words):
    """The single stderr line of a failed call, checked to contain every word."""
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def status_caps(text):
    """{'CapEff': int, ...} from /proc/self/status text."""
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.startswith("Cap") or key == "NoNewPrivs":
            out[key] = int(value.strip(), 16 if key.startswith("Cap") else 10)
    return out


# ---- 1. pid 1, hostname, network, uts

def test_pid1_hostname_network_domainname(oci, make_bundle, container_id):
    script = "echo $$; hostname; ls /sys/class/net; cat /proc/sys/kernel/domainname"
    proc = run_sh(oci, make_bundle, container_id, script,
                  mutate=lambda c: c.update(hostname="boxy", domainname="example.test"))
    assert proc.stdout.split("\n") == ["1", "boxy", "lo", "example.test", ""]
    assert_nothing_left(oci, container_id)


def test_exit_status_is_the_containers(oci, make_bundle, container_id):
    proc = run_sh(oci, make_bundle, container_id, "exit 7", check=False)
    assert proc.returncode == 7, proc.stderr


def test_signals_start_at_their_defaults(oci, make_bundle, container_id):
    # CPython ignores SIGPIPE and SIGXFSZ, glibc's posix_spawn leaves its own real-time
    # signals ignored in a child, and an ignored signal survives execve: none may reach
    # the container's process (`yes | head` must end by SIGPIPE, quietly).
    proc = run_sh(oci, make_bundle, container_id,
                  "grep -E '^Sig(Ign|Blk)' /proc/self/status; yes | head -1")
    assert proc.stdout.splitlines() == ["SigBlk:\t0000000000000000",
                                        "SigIgn:\t0000000000000000", "y"], proc.stdout
    assert proc.stderr == ""


def test_an_exec_that_fails_after_ready_is_reported(oci, make_bundle, container_id):
    def mutate(config):
        config["process"]["args"] = ["/tmp/notabinary"]
        config["mounts"].append({"destination": "/tmp", "type": "bind",
                                 "source": scratch, "options": ["rbind"]})

    scratch = tempfile.mkdtemp(prefix="berth-exec-")
    try:
        with open(os.path.join(scratch, "notabinary"), "w") as f:
            f.write("garbage\n")
        os.chmod(os.path.join(scratch, "notabinary"), 0o755)
        proc = oci("run", "--bundle", make_bundle(mutate=mutate), container_id, check=False)
        one_line_error(proc, "Exec format error", "/tmp/notabinary")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# ---- 2. mounts

def _mounts(text):
    """{mount point: (fstype, set of options)} from /proc/mounts text (last one wins)."""
    out = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 4:
            out[fields[1]] = (fields[2], set(fields[3].split(",")))
    return out


def test_standard_filesystems_are_mounted(oci, make_bundle, container_id):
    proc = run_sh(oci, make_bundle, container_id, "cat /proc/mounts")
    mounts = _mounts(proc.stdout)
    assert mounts["/proc"][0] == "proc"
    assert mounts["/sys"][0] == "sysfs" and "ro" in mounts["/sys"][1]
    assert mounts["/dev"][0] == "tmpfs"
    assert mounts["/dev/pts"][0] == "devpts"
    assert mounts["/dev/shm"][0] == "tmpfs"
    assert mounts["/dev/mqueue"][0] == "mqueue"
    assert {"nosuid", "nodev", "noexec"} <= mounts["/dev/shm"][1]
    assert "ro" in mounts["/"][1]


def test_bind_mounts_rw_and_ro(oci, make_bundle, container_id, tmp_path):
    rw = tmp_path / "rw"
    ro = tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    (ro / "file").write_text("host data\n")

    def mutate(c):
        add_mount(c, "/mnt/rw", "bind", str(rw), ["rbind", "rw"])
        add_mount(c, "/mnt/ro", "bind", str(ro), ["rbind", "ro", "nosuid", "nodev", "noexec"])

    script = ("echo from-inside > /mnt/rw/out; cat /mnt/ro/file; "
              "touch /mnt/ro/new 2>/dev/null && echo ro-writable || echo ro-refused; "
              "grep ' /mnt/ro ' /proc/mounts")
    proc = run_sh(oci, make_bundle, container_id, script, mutate=mutate, readonly=False)
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["host data", "ro-refused"]
    opts = set(lines[2].split()[3].split(","))
    assert {"ro", "nosuid", "nodev", "noexec"} <= opts
    assert (rw / "out").read_text() == "from-inside\n"
    assert not (ro / "new").exists()


def test_relative_destination_and_tmpfs_size(oci, make_bundle, container_id):
    def mutate(c):
        add_mount(c, "tmp/x", options=["size=1m", "mode=700"])

    script = "cd / && grep ' /tmp/x ' /proc/mounts; stat -c %a tmp/x"
    proc = run_sh(oci, make_bundle, container_id, script, mutate=mutate, readonly=False)
    line, mode = proc.stdout.splitlines()
    fields = line.split()
    assert fields[2] == "tmpfs"
    assert "size=1024k" in fields[3].split(",")
    assert mode == "700"


def _mountinfo_optional(text, mount_point):
    """The optional fields (shared:N, master:N, ...) of MOUNT_POINT in mountinfo text."""
    for line in text.splitlines():
        fields = line.split()
        if fields[4] == mount_point:
            return fields[6:fields.index("-")]
    raise AssertionError(f"{mount_point} not in mountinfo:\n{text}")


@pytest.fixture
def shared_host_mount(tmp_path):
    """A tmpfs on the host with shared propagation (the host's own mounts are private)."""
    path = tmp_path / "shared-src"
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "berth-test", path], check=True)
    try:
        subprocess.run(["mount", "--make-shared", path], check=True)
        yield path
    finally:
        subprocess.run(["umount", "-l", path], check=False)


def test_mount_propagation(oci, make_bundle, container_id, shared_host_mount):
    src = shared_host_mount

    def mutate(c):
        c["linux"]["rootfsPropagation"] = "shared"
        add_mount(c, "/mnt/shared", options=["rshared"])
        add_mount(c, "/mnt/slave", "bind", str(src), ["rbind", "rslave"])
        add_mount(c, "/mnt/private", options=["rprivate"])

    proc = run_sh(oci, make_bundle, container_id, "cat /proc/self/mountinfo", mutate=mutate,
                  readonly=False)
    info = proc.stdout
    assert any(f.startswith("shared:") for f in _mountinfo_optional(info, "/"))
    assert any(f.startswith("shared:") for f in _mountinfo_optional(info, "/mnt/shared"))
    assert any(f.startswith("master:") for f in _mountinfo_optional(info, "/mnt/slave"))
    assert _mountinfo_optional(info, "/mnt/private") == []


@pytest.mark.parametrize("propagation", ["private", "rprivate", "slave", "rslave"])
def test_root_propagation_not_shared(oci, make_bundle, container_id, propagation):
    proc = run_sh(oci, make_bundle, container_id, "cat /proc/self/mountinfo",
                  mutate=lambda c: c["linux"].update(rootfsPropagation=propagation))
    assert not any(f.startswith("shared:") for f in _mountinfo_optional(proc.stdout, "/"))


def test_tmpcopyup_carries_the_directory_content(oci, make_bundle, container_id):
    def mutate(c):
        add_mount(c, "/etc", options=["tmpcopyup", "mode=755"])

    script = "grep ' /etc ' /proc/mounts | cut -d' ' -f3; cat /etc/marker; echo new > /etc/new"
    bundle = make_bundle(args=sh(script), mutate=mutate, readonly=False)
    (bundle / "rootfs" / "etc" / "marker").write_text("from the image\n")
    proc = oci("run", "--bundle", bundle, container_id)
    assert proc.stdout == "tmpfs\nfrom the image\n"
    assert not (bundle / "rootfs" / "etc" / "new").exists()


# ---- 3. read-only root, masked and read-only paths

def test_readonly_root_masked_and_readonly_paths(oci, make_bundle, container_id):
    def mutate(c):
        c["linux"]["maskedPaths"] = ["/proc/kcore", "/sys/firmware", "/proc/nonexistent"]

    script = ("touch /x 2>/dev/null && echo root-writable || echo root-ro; "
              "echo kcore=$(head -c 16 /proc/kcore | wc -c); "
              "echo firmware=$(ls -A /sys/firmware | wc -l); "
              "echo 1 2>/dev/null > /proc/sys/kernel/ns_last_pid && echo sys-writable "
              "|| echo sys-ro")
    proc = run_sh(oci, make_bundle, container_id, script, mutate=mutate)
    assert proc.stdout.splitlines() == ["root-ro", "kcore=0", "firmware=0", "sys-ro"]


# ---- 4. /dev

def test_default_devices_and_links(oci, make_bundle, container_id):
    script = ("for d in null zero full random urandom tty; do "
              "  echo $d $(stat -c '%F %t:%T %a' /dev/$d); done; "
              "for l in fd stdin stdout stderr ptmx; do echo $l $(readlink /dev/$l); done; "
              "echo x > /dev/null && head -c 3 /dev/zero | wc -c")
    proc = run_sh(oci, make_bundle, container_id, script)
    lines = proc.stdout.splitlines()
    expect = {"null": "1:3", "zero": "1:5", "full": "1:7", "random": "1:8",
              "urandom": "1:9", "tty": "5:0"}
    for line in lines[:6]:
        name, kind, numbers, mode = line.split(" ", 1)[0], *line.rsplit(" ", 2)[-3:]
        assert kind.endswith("special file"), line
        major, minor = (int(n, 16) for n in numbers.split(":"))
        assert f"{major}:{minor}" == expect[name], line
        assert mode == "666", line
    assert lines[6:11] == ["fd /proc/self/fd", "stdin /proc/self/fd/0",
                           "stdout /proc/self/fd/1", "stderr /proc/self/fd/2", "ptmx pts/ptmx"]
    assert lines[11] == "3"


def test_config_device_with_mode_and_owner(oci, make_bundle, container_id):
    def mutate(c):
        c["linux"]["devices"] = [{"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3,
                                  "fileMode": 0o600, "uid": 1000, "gid": 1001}]

    # Root without CAP_DAC_OVERRIDE (not in the default set) is held to mode and owner.
    script = "stat -c '%F %t:%T %a %u %g' /dev/mynull; head -c 1 /dev/mynull 2>&1"
    proc = run_sh(oci, make_bundle, container_id, script, mutate=mutate, check=False)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "character special file 1:3 600 1000 1001"
    assert "Permission denied" in lines[1]


def test_device_cgroup_denies_what_is_not_allowed(oci, make_bundle, container_id):
    def mutate(c):
        with_tmp(c)
        c["linux"]["resources"] = {"devices": [{"allow": False, "access": "rwm"}]}
        c["process"]["capabilities"]["bounding"].append("CAP_MKNOD")
        c["process"]["capabilities"]["effective"].append("CAP_MKNOD")
        c["process"]["capabilities"]["permitted"].append("CAP_MKNOD")

    script = ("echo x > /dev/null && echo null-ok; "
              "mknod /tmp/mem c 1 1 && echo mknod-ok; "
              "head -c 1 /tmp/mem 2>&1 >/dev/null; echo read=$?")
    proc = run_sh(oci, make_bundle, container_id, script, mutate=mutate)
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["null-ok", "mknod-ok"]
    assert "Operation not permitted" in lines[2]
    assert lines[3] != "read=0"


# ---- 5. capabilities and no_new_privs

def test_default_capabilities_forbid_mknod_and_sethostname(oci, make_bundle, container_id):
    script = ("mknod /tmp/n c 1 3 2>/dev/null && echo mknod-ok || echo mknod-refused; "
              "hostname foo 2>/dev/null && echo hostname-ok || echo hostname-refused; "
              "grep -E '^(Cap|NoNewPrivs)' /proc/self/status")
    bundle = make_bundle(args=sh(script), mutate=with_tmp)
    proc = oci("run", "--bundle", bundle, container_id)
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["mknod-refused", "hostname-refused"]
    got = status_caps("\n".join(lines[2:]))
    import json
    config = json.loads((bundle / "config.json").read_text())
    want = config["process"]["capabilities"]
    assert got["CapEff"] == spec_caps.mask(want["effective"])
    assert got["CapPrm"] == spec_caps.mask(want["permitted"])
    assert got["CapBnd"] == spec_caps.mask(want["bounding"])
    assert got["CapAmb"] == 0
    assert got["NoNewPrivs"] == 1


def test_ambient_capabilities_for_a_non_root_user(oci, make_bundle, container_id):
    caps = ["CAP_NET_BIND_SERVICE", "CAP_KILL"]

    def mutate(c):
        c["process"]["user"] = {"uid": 1000, "gid": 1000}
        c["process"]["noNewPrivileges"] = False
        c["process"]["capabilities"] = {k: list(caps) for k in (
            "bounding", "effective", "permitted", "inheritable", "ambient")}

    proc = run_sh(oci, make_bundle, container_id,
                  "grep -E '^(Cap|NoNewPrivs)' /proc/self/status", mutate=mutate)
    got = status_caps(proc.stdout)
    mask = spec_caps.mask(caps)
    assert got == {"CapInh": mask, "CapPrm": mask, "CapEff": mask, "CapBnd": mask,
                   "CapAmb": mask, "NoNewPrivs": 0}


# ---- 6. user, umask, cwd

def test_user_groups_umask_cwd(oci, make_bundle, container_id):
    def mutate(c):
        c["process"]["user"] = {"uid": 1000, "gid": 1001, "additionalGids": [10, 20],
                                "umask": 0o027}
        c["process"]["cwd"] = "/etc"

    proc = run_sh(oci, make_bundle, container_id, "id -u; id -g; id -G; umask; pwd",
                  mutate=mutate)
    uid, gid, groups, umask, cwd = proc.stdout.splitlines()
    assert (uid, gid) == ("1000", "1001")
    assert set(groups.split()) == {"1001", "10", "20"}
    assert umask == "0027"
    assert cwd == "/etc"


def test_missing_cwd_fails_create_and_leaves_nothing(oci, make_bundle, container_id):
    bundle = make_bundle(args=["true"], mutate=lambda c: c["process"].update(cwd="/nowhere"))
    proc = oci("create", "--bundle", bundle, container_id, check=False)
    one_line_error(proc, "process.cwd", "/nowhere")
    assert_nothing_left(oci, container_id)


# ---- 7. rlimits

def test_rlimits(oci, make_bundle, container_id):
    def mutate(c):
        c["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456},
                                   {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}]

    proc = run_sh(oci, make_bundle, container_id, "ulimit -n; ulimit -Hn; ulimit -c",
                  mutate=mutate)
    assert proc.stdout.splitlines() == ["123", "456", "0"]


def test_unknown_rlimit_is_refused(oci, make_bundle, container_id):
    bundle = make_bundle(mutate=lambda c: c["process"].update(
        rlimits=[{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]))
    proc = oci("run", "--bundle", bundle, container_id, check=False)
    one_line_error(proc, "process.rlimits", "RLIMIT_BOGUS")
    assert_nothing_left(oci, container_id)


# ---- 8. resources

def _memory_limit(config, limit):
    config["linux"]["resources"]["memory"] = {"limit": limit}
    # Without a swap limit the allocator would swap out instead of meeting the OOM killer.
    if os.path.exists(os.path.join(CGROUP_ROOT, "memory", "memory.memsw.limit_in_bytes")):
        config["linux"]["resources"]["memory"]["swap"] = limit


def test_memory_limit_is_visible_and_enforced(oci, make_bundle, container_id):
    if not os.path.isdir(os.path.join(CGROUP_ROOT, "memory")):
        pytest.skip("no v1 memory hierarchy")
    limit = 32 * 1024 * 1024
    proc = run_sh(oci, make_bundle, container_id,
                  "cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
                  mutate=lambda c: _memory_limit(c, limit))
    assert proc.stdout.strip() == str(limit)
    # `tail` keeps the last line of /dev/zero, which never ends: it grows until killed.
    bundle = make_bundle(args=["tail", "/dev/zero"], mutate=lambda c: _memory_limit(c, limit))
    proc = oci("run", "--bundle", bundle, container_id + "-oom", check=False)
    assert proc.returncode == 128 + 9, proc.stderr
    assert_nothing_left(oci, container_id + "-oom")


def test_pids_limit_stops_a_fork_bomb(oci, make_bundle, container_id):
    def mutate(c):
        c["linux"]["resources"]["pids"] = {"limit": 20}

    # ash gives up on the first fork that fails; the sleeps left are killed by delete.
    script = "for i in $(seq 50); do sleep 30 & done; echo all-forked"
    proc = run_sh(oci, make_bundle, container_id, script, mutate=mutate, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "can't fork" in proc.stderr
    assert "all-forked" not in proc.stdout
    assert_nothing_left(oci, container_id)


def test_cgroup_is_the_containers_own(oci, make_bundle, container_id):
    """/proc/self/cgroup reads "/" inside a cgroup namespace, and the host sees the path."""
    proc = run_sh(oci, make_bundle, container_id, "cat /proc/self/cgroup")
    for line in proc.stdout.splitlines():
        assert line.split(":", 2)[2] == "/", line
