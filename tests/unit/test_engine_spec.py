"""engine.spec: Docker's merge of image config and run options, user resolution inside the
rootfs, /etc files, and the config.json built for a container - checked against berth's own
model and validator and against the runtime-spec's JSON schema."""

import json
import os

import pytest

from berth.engine import seccomp_default
from berth.engine.runopts import host_config, parse_run_flags
from berth.engine.spec import (
    DEFAULT_PATH, INIT_PATH, container_caps, etc_files, merge_image_config, oci_spec,
    resolve_user, scan_host_devices,
)
from berth.errors import InvalidArgument, NotFound
from berth.spec.caps import CAPS, DEFAULT_CAPS, host_last_cap
from berth.spec.runtime import Spec
from berth.spec.validate import Host, validate
from tests.unit.test_spec_schema import SCHEMA_DIR, assert_valid

CID = "0123456789ab" + "c" * 52

ALL_CAPS = container_caps({"Privileged": True})

IMAGE = {
    "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", "A=image"],
    "Entrypoint": ["/entry.sh"],
    "Cmd": ["serve", "--port", "80"],
    "WorkingDir": "/app",
    "User": "",
    "Labels": {"maintainer": "img", "shared": "image"},
    "ExposedPorts": {"80/tcp": {}},
    "Volumes": {"/data": {}},
    "StopSignal": "SIGQUIT",
    "Healthcheck": {"Test": ["CMD", "true"], "Interval": 30 * 10**9, "Retries": 3},
}


def opts_for(*words):
    opts, _, _ = parse_run_flags(list(words) or ["alpine"])
    return opts


def merged(*words, image=IMAGE):
    return merge_image_config(image, opts_for(*words))


# ---------------------------------------------------------------- merge rules

@pytest.mark.parametrize("words,entrypoint,cmd", [
    (["img"], ["/entry.sh"], ["serve", "--port", "80"]),
    (["img", "debug"], ["/entry.sh"], ["debug"]),
    (["--entrypoint", "/bin/sh", "img"], ["/bin/sh"], None),
    (["--entrypoint", "/bin/sh", "img", "-c", "ls"], ["/bin/sh"], ["-c", "ls"]),
    (["--entrypoint", "", "img", "ls"], None, ["ls"]),
])
def test_entrypoint_and_cmd(words, entrypoint, cmd):
    conf = merged(*words)
    assert conf["Entrypoint"] == entrypoint
    assert conf["Cmd"] == cmd


def test_empty_entrypoint_without_args_has_no_command():
    with pytest.raises(InvalidArgument) as info:
        merged("--entrypoint", "", "img")
    assert str(info.value) == "No command specified"
    with pytest.raises(InvalidArgument):
        merged("img", image={})


def test_cmd_only_image():
    conf = merged("img", image={"Cmd": ["sh"]})
    assert conf["Entrypoint"] is None and conf["Cmd"] == ["sh"]


def test_env_merges_by_name():
    conf = merged("-e", "A=user", "-e", "B=2", "img")
    assert conf["Env"] == ["A=user", "B=2", "PATH=/usr/local/bin:/usr/bin:/bin",
                           "LANG=C.UTF-8"]


def test_labels_merge_user_wins():
    conf = merged("-l", "shared=user", "-l", "mine=1", "img")
    assert conf["Labels"] == {"maintainer": "img", "shared": "user", "mine": "1"}


def test_workdir_user_stop_signal():
    conf = merged("img")
    assert conf["WorkingDir"] == "/app" and conf["User"] == "" and conf["StopSignal"] == "SIGQUIT"
    conf = merged("-w", "/x", "-u", "nobody", "--stop-signal", "SIGINT", "img")
    assert conf["WorkingDir"] == "/x" and conf["User"] == "nobody"
    assert conf["StopSignal"] == "SIGINT"
    conf = merged("img", image={"Cmd": ["sh"]})
    assert conf["WorkingDir"] == "" and conf["StopSignal"] == "SIGTERM"


def test_relative_workdir_refused():
    with pytest.raises(InvalidArgument) as info:
        merged("-w", "rel", "img")
    assert str(info.value) == ("the working directory 'rel' is invalid, it needs to be an "
                               "absolute path")


def test_ports_and_volumes_merge():
    conf = merged("-p", "8080:8080", "--expose", "9000", "img")
    assert set(conf["ExposedPorts"]) == {"80/tcp", "8080/tcp", "9000/tcp"}
    assert conf["Volumes"] == {"/data": {}}


def test_healthcheck_merge():
    assert merged("img")["Healthcheck"] == IMAGE["Healthcheck"]
    # dockerd fills the other fields from the image; Test NONE turns the check off anyway.
    assert merged("--no-healthcheck", "img")["Healthcheck"]["Test"] == ["NONE"]
    conf = merged("--health-interval", "5s", "img")
    assert conf["Healthcheck"]["Test"] == ["CMD", "true"]
    assert conf["Healthcheck"]["Interval"] == 5 * 10**9 and conf["Healthcheck"]["Retries"] == 3
    conf = merged("--health-cmd", "check", "img")
    assert conf["Healthcheck"]["Test"] == ["CMD-SHELL", "check"]
    assert conf["Healthcheck"]["Interval"] == 30 * 10**9
    assert "Healthcheck" not in merged("img", image={"Cmd": ["sh"]})


def test_tty_and_stdin_flags():
    conf = merged("-it", "img")
    assert conf["Tty"] and conf["OpenStdin"] and conf["AttachStdin"] and conf["StdinOnce"]
    conf = merged("-d", "img")
    assert not conf["AttachStdout"] and not conf["OpenStdin"]


def test_stop_timeout_kept_only_when_given():
    assert "StopTimeout" not in merged("img")
    assert merged("--stop-timeout", "3", "img")["StopTimeout"] == 3


# ---------------------------------------------------------------- users

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
# a comment
app:x:1000:1000:App:/home/app:/bin/sh
nohome:x:1001:1001::
"""

GROUP = """root:x:0:
daemon:x:1:
app:x:1000:
audio:x:29:app,other
video:x:44:app
staff:x:50:
"""


@pytest.fixture
def rootfs(tmp_path):
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    return str(root)


@pytest.mark.parametrize("spec,expected", [
    ("", (0, 0, [], "/root")),
    ("root", (0, 0, [], "/root")),
    ("app", (1000, 1000, [29, 44], "/home/app")),
    ("1000", (1000, 1000, [29, 44], "/home/app")),
    ("app:staff", (1000, 50, [], "/home/app")),
    ("app:50", (1000, 50, [], "/home/app")),
    ("app:4242", (1000, 4242, [], "/home/app")),
    ("4242", (4242, 0, [], "/")),
    ("4242:4243", (4242, 4243, [], "/")),
    ("daemon", (1, 1, [], "/usr/sbin")),
    ("nohome", (1001, 1001, [], "/")),
])
def test_resolve_user(rootfs, spec, expected):
    assert resolve_user(rootfs, spec) == expected


def test_group_add(rootfs):
    assert resolve_user(rootfs, "app", ["staff", "7", "audio"]) == (1000, 1000, [29, 44, 50, 7],
                                                                    "/home/app")
    with pytest.raises(InvalidArgument) as info:
        resolve_user(rootfs, "", ["nogroup"])
    assert str(info.value) == "unable to find group nogroup: no matching entries in group file"


def test_unknown_user_and_group(rootfs):
    with pytest.raises(InvalidArgument) as info:
        resolve_user(rootfs, "x")
    assert str(info.value) == "unable to find user x: no matching entries in passwd file"
    with pytest.raises(InvalidArgument) as info:
        resolve_user(rootfs, "app:nogroup")
    assert str(info.value) == "unable to find group nogroup: no matching entries in group file"


def test_no_etc_files(tmp_path):
    assert resolve_user(str(tmp_path), "") == (0, 0, [], "/root")
    assert resolve_user(str(tmp_path), "123:45") == (123, 45, [], "/")
    with pytest.raises(InvalidArgument):
        resolve_user(str(tmp_path), "app")


@pytest.mark.parametrize("how", ["absolute", "relative", "dir"])
def test_passwd_symlink_cannot_leave_the_rootfs(tmp_path, how):
    outside = tmp_path / "host-etc"
    outside.mkdir()
    (outside / "passwd").write_text("hostonly:x:4321:4321::/secret:/bin/sh\n")
    (outside / "group").write_text("hostgroup:x:4321:\n")
    root = tmp_path / "rootfs"
    root.mkdir()
    if how == "dir":
        # /etc itself a link to the host's directory
        os.symlink(str(outside), root / "etc")
    else:
        (root / "etc").mkdir()
        for name in ("passwd", "group"):
            target = (str(outside / name) if how == "absolute"
                      else "../" * 8 + str(outside / name).lstrip("/"))
            os.symlink(target, root / "etc" / name)
    with pytest.raises(InvalidArgument) as info:
        resolve_user(str(root), "hostonly")
    assert "unable to find user hostonly" in str(info.value)
    with pytest.raises(InvalidArgument):
        resolve_user(str(root), "0:hostgroup")


def test_passwd_symlink_inside_the_rootfs_is_followed(tmp_path):
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "lib").mkdir()
    (root / "lib" / "passwd").write_text("svc:x:77:77::/srv:/bin/sh\n")
    os.symlink("/lib/passwd", root / "etc" / "passwd")
    assert resolve_user(str(root), "svc") == (77, 77, [], "/srv")


# ---------------------------------------------------------------- /etc files

def test_etc_files(tmp_path):
    resolv = tmp_path / "host-resolv.conf"
    resolv.write_text("# generated\nnameserver 127.0.0.1\nnameserver 10.0.0.1\n"
                      "search example.com\noptions ndots:2\n")
    files = etc_files(str(tmp_path), "abc123", resolv_conf=str(resolv),
                      extra_hosts=["db:10.0.0.2"])
    assert set(files) == {"/etc/hostname", "/etc/hosts", "/etc/resolv.conf"}
    assert open(files["/etc/hostname"]).read() == "abc123\n"
    assert open(files["/etc/hosts"]).read() == (
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
        "ff02::2\tip6-allrouters\n10.0.0.2\tdb\n")
    text = open(files["/etc/resolv.conf"]).read()
    assert "nameserver 10.0.0.1" in text and "127.0.0.1" not in text
    assert "search example.com" in text and "options ndots:2" in text


def test_resolv_conf_fallback_and_overrides(tmp_path):
    resolv = tmp_path / "r"
    resolv.write_text("nameserver 127.0.0.53\nsearch lan\n")
    files = etc_files(str(tmp_path), "h", resolv_conf=str(resolv))
    text = open(files["/etc/resolv.conf"]).read()
    assert "nameserver 8.8.8.8\nnameserver 8.8.4.4\n" in text
    files = etc_files(str(tmp_path), "h", ["1.1.1.1"], dns_search=["corp"],
                      dns_options=["ndots:1"], resolv_conf=str(resolv))
    assert open(files["/etc/resolv.conf"]).read() == (
        "search corp\nnameserver 1.1.1.1\noptions ndots:1\n")


def test_etc_files_host_network(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost myhost")
    resolv = tmp_path / "r"
    resolv.write_text("nameserver 127.0.0.53\n")
    files = etc_files(str(tmp_path), "h", host_network=True, hosts_file=str(hosts),
                      resolv_conf=str(resolv))
    assert open(files["/etc/hosts"]).read() == "127.0.0.1 localhost myhost\n"
    assert "nameserver 127.0.0.53" in open(files["/etc/resolv.conf"]).read()


# ---------------------------------------------------------------- the runtime spec

def check_spec(raw, bundle):
    """A config.json berth-oci would accept: the model parses it, the validator passes it,
    the runtime-spec's schema agrees, and it survives JSON."""
    assert json.loads(json.dumps(raw)) == raw
    spec = Spec.from_json(raw)
    validate(spec, bundle, CID[:20], host=Host(has_apparmor=False, has_selinux=False))
    if os.path.isdir(SCHEMA_DIR):
        assert_valid("config-schema.json", raw)
    return spec


def build(rootfs, *words, image=None, etc=None, **kw):
    opts, _, _ = parse_run_flags(list(words) + ["img"] + ([] if image else ["sh"]))
    record = {"id": CID, "config": merge_image_config(image or {}, opts),
              "host_config": host_config(opts)}
    kw.setdefault("host_devices", [])
    return oci_spec(record, rootfs, etc=etc, **kw)


def test_default_container(rootfs, tmp_path):
    raw = build(rootfs, "-t", "-e", "FOO=bar", image=IMAGE)
    spec = check_spec(raw, str(tmp_path))
    proc = raw["process"]
    assert proc["args"] == ["/entry.sh", "serve", "--port", "80"]
    assert proc["env"] == ["PATH=/usr/local/bin:/usr/bin:/bin", f"HOSTNAME={CID[:12]}",
                           "TERM=xterm", "FOO=bar", "LANG=C.UTF-8", "A=image", "HOME=/root"]
    assert proc["cwd"] == "/app" and proc["terminal"]
    assert proc["user"] == {"uid": 0, "gid": 0}
    assert proc["capabilities"]["bounding"] == list(DEFAULT_CAPS)
    assert proc["capabilities"]["effective"] == list(DEFAULT_CAPS)
    assert "inheritable" not in proc["capabilities"] and not proc["noNewPrivileges"]
    assert raw["root"] == {"path": rootfs, "readonly": False}
    assert raw["hostname"] == CID[:12]
    assert [ns["type"] for ns in raw["linux"]["namespaces"]] == [
        "pid", "ipc", "uts", "mount", "network", "cgroup"]
    assert raw["linux"]["cgroupsPath"] == f"/berth/{CID}"
    assert "/proc/kcore" in raw["linux"]["maskedPaths"]
    assert "/proc/sys" in raw["linux"]["readonlyPaths"]
    assert raw["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    mounts = {m["destination"]: m for m in raw["mounts"]}
    assert list(mounts) == ["/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup",
                            "/dev/mqueue", "/dev/shm"]
    assert "ro" in mounts["/sys"]["options"] and "ro" in mounts["/sys/fs/cgroup"]["options"]
    assert "size=65536k" in mounts["/dev/shm"]["options"]
    rules = raw["linux"]["resources"]["devices"]
    assert rules[0] == {"allow": False, "access": "rwm"}
    assert {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"} in rules
    assert spec.process.no_new_privileges is False


def test_env_defaults(rootfs, tmp_path, monkeypatch):
    monkeypatch.delenv("PATH")  # a bare -e NAME unset here removes NAME from the defaults
    raw = build(rootfs, "-u", "app", "-e", "HOME=/custom", "-e", "PATH")
    monkeypatch.undo()
    env = raw["process"]["env"]
    assert "HOME=/custom" in env and not any(e.startswith("PATH=") for e in env)
    assert "TERM=xterm" not in env
    raw = build(rootfs, "-u", "app")
    assert raw["process"]["env"] == [f"PATH={DEFAULT_PATH}", f"HOSTNAME={CID[:12]}",
                                     "HOME=/home/app"]
    assert raw["process"]["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [29, 44]}
    check_spec(raw, str(tmp_path))


def test_unknown_user_is_refused(rootfs):
    with pytest.raises(InvalidArgument) as info:
        build(rootfs, "-u", "ghost")
    assert str(info.value) == "unable to find user ghost: no matching entries in passwd file"


def test_resources(rootfs, tmp_path):
    raw = build(rootfs, "-m", "512m", "--memory-reservation", "256m", "--cpus", "1.5",
                "--cpu-shares", "512", "--cpuset-cpus", "0", "--cpuset-mems", "0",
                "--pids-limit", "100", "--oom-score-adj", "300", "--shm-size", "1g")
    check_spec(raw, str(tmp_path))
    res = raw["linux"]["resources"]
    assert res["memory"] == {"limit": 512 << 20, "swap": 1 << 30, "reservation": 256 << 20}
    assert res["cpu"] == {"shares": 512, "period": 100000, "quota": 150000, "cpus": "0",
                          "mems": "0"}
    assert res["pids"] == {"limit": 100}
    assert raw["process"]["oomScoreAdj"] == 300
    shm = next(m for m in raw["mounts"] if m["destination"] == "/dev/shm")
    assert "size=1048576k" in shm["options"]


def test_swap_values(rootfs):
    assert build(rootfs, "-m", "64m", "--memory-swap", "-1")["linux"]["resources"][
        "memory"] == {"limit": 64 << 20, "swap": -1}
    assert build(rootfs, "-m", "64m", "--memory-swap", "100m")["linux"]["resources"][
        "memory"] == {"limit": 64 << 20, "swap": 100 << 20}
    assert "memory" not in build(rootfs, "--pids-limit", "-1")["linux"]["resources"]
    assert "pids" not in build(rootfs, "--pids-limit", "-1")["linux"]["resources"]


def test_privileged(rootfs, tmp_path):
    devices = [{"path": "/dev/sda", "type": "b", "major": 8, "minor": 0, "fileMode": 0o660,
                "uid": 0, "gid": 6}]
    raw = build(rootfs, "--privileged", "--cap-drop", "ALL", host_devices=devices)
    check_spec(raw, str(tmp_path))
    caps = raw["process"]["capabilities"]["bounding"]
    assert len(caps) == len(ALL_CAPS) and "CAP_SYS_ADMIN" in caps
    linux = raw["linux"]
    assert "seccomp" not in linux and "maskedPaths" not in linux
    assert "readonlyPaths" not in linux
    assert linux["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert linux["devices"] == devices
    mounts = {m["destination"]: m for m in raw["mounts"]}
    assert "ro" not in mounts["/sys"]["options"]
    assert "ro" not in mounts["/sys/fs/cgroup"]["options"]


def test_all_caps_are_the_ones_we_hold():
    with open("/proc/self/status") as f:
        bounding = next(int(line.split()[1], 16) for line in f if line.startswith("CapBnd:"))
    assert ALL_CAPS == [c for c, n in sorted(CAPS.items(), key=lambda kv: kv[1])
                        if n <= host_last_cap() and bounding >> n & 1]


def test_scan_host_devices():
    devices = scan_host_devices()
    paths = {d["path"] for d in devices}
    assert "/dev/null" in paths and not any(p.startswith("/dev/pts/") for p in paths)
    null = next(d for d in devices if d["path"] == "/dev/null")
    assert (null["type"], null["major"], null["minor"]) == ("c", 1, 3)


@pytest.mark.parametrize("adds,drops,expected", [
    ([], [], list(DEFAULT_CAPS)),
    (["NET_ADMIN"], ["MKNOD"], [c for c in DEFAULT_CAPS if c != "CAP_MKNOD"] + ["CAP_NET_ADMIN"]),
    (["cap_sys_time", "CAP_CHOWN"], [], list(DEFAULT_CAPS) + ["CAP_SYS_TIME"]),
    ([], ["ALL"], []),
    (["NET_ADMIN", "chown"], ["all"], ["CAP_NET_ADMIN", "CAP_CHOWN"]),
])
def test_cap_add_drop(adds, drops, expected):
    assert container_caps({"CapAdd": adds, "CapDrop": drops}) == expected


def test_cap_add_all():
    caps = container_caps({"CapAdd": ["ALL"], "CapDrop": ["NET_RAW"]})
    assert "CAP_NET_RAW" not in caps and "CAP_SYS_ADMIN" in caps
    assert len(caps) == len(ALL_CAPS) - 1
    assert all(c in CAPS for c in caps)


def test_cap_drop_all_in_spec(rootfs, tmp_path):
    raw = build(rootfs, "--cap-drop", "ALL")
    check_spec(raw, str(tmp_path))
    assert raw["process"]["capabilities"] == {"bounding": [], "effective": [], "permitted": []}


def test_ulimits(rootfs, tmp_path):
    raw = build(rootfs, "--ulimit", "nofile=1024:2048", "--ulimit", "core=-1",
                "--ulimit", "nofile=10:20")
    check_spec(raw, str(tmp_path))
    assert raw["process"]["rlimits"] == [
        {"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20},
        {"type": "RLIMIT_CORE", "soft": (1 << 64) - 1, "hard": (1 << 64) - 1},
    ]


def test_security_opts(rootfs, tmp_path):
    raw = build(rootfs, "--security-opt", "no-new-privileges", "--security-opt",
                "seccomp=unconfined", "--security-opt", "systempaths=unconfined")
    check_spec(raw, str(tmp_path))
    assert raw["process"]["noNewPrivileges"]
    assert "seccomp" not in raw["linux"] and "maskedPaths" not in raw["linux"]
    raw = build(rootfs, "--security-opt", "no-new-privileges=false")
    assert not raw["process"]["noNewPrivileges"]


def test_seccomp_file(rootfs, tmp_path):
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
        "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                     "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                    {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
            {"name": "mount", "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
             "excludes": {"caps": ["CAP_FOWNER"]}},
            {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW",
             "includes": {"arches": ["amd64"]}},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["future"], "action": "SCMP_ACT_ALLOW",
             "includes": {"minKernel": "99.0"}},
        ]}))
    raw = build(rootfs, "--security-opt", f"seccomp={profile}", machine="x86_64")
    check_spec(raw, str(tmp_path))
    sc = raw["linux"]["seccomp"]
    assert sc["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert sc["defaultErrnoRet"] == 1
    assert sc["syscalls"] == [
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
    ]
    raw = build(rootfs, "--security-opt", f"seccomp={profile}", "--cap-add", "SYS_ADMIN",
                "--cap-drop", "FOWNER", machine="aarch64")
    sc = raw["linux"]["seccomp"]
    assert sc["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    names = [n for rule in sc["syscalls"] for n in rule["names"]]
    assert names == ["read", "write", "mount", "chmod", "personality"]


def test_docker_profile_errors():
    with pytest.raises(InvalidArgument) as info:
        seccomp_default.from_docker({"defaultAction": "SCMP_ACT_ALLOW",
                                     "architectures": ["SCMP_ARCH_X86_64"],
                                     "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]})
    assert "use either 'architectures' or 'archMap'" in str(info.value)
    with pytest.raises(InvalidArgument) as info:
        seccomp_default.from_docker({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"name": "read", "names": ["write"], "action": "SCMP_ACT_ALLOW"}]})
    assert "use either 'name' or 'names'" in str(info.value)
    with pytest.raises(InvalidArgument):
        seccomp_default.from_docker({"syscalls": []})


def test_binds_tmpfs_and_etc(rootfs, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    created = tmp_path / "made-by-v"
    etc = etc_files(str(tmp_path), CID[:12], resolv_conf=os.devnull)
    raw = build(rootfs, "--read-only", "-v", f"{src}:/data/deep:ro", "-v", f"{created}:/data",
                "--mount", f"type=bind,src={src},dst=/opt,bind-propagation=rslave",
                "--mount", "type=tmpfs,dst=/cache,tmpfs-size=1m,tmpfs-mode=700",
                "--tmpfs", "/run:exec,size=2m", "--tmpfs", "/dev/shm:size=8m", etc=etc)
    check_spec(raw, str(tmp_path))
    assert created.is_dir()  # -v makes a missing host directory
    assert raw["root"]["readonly"]
    mounts = {m["destination"]: m for m in raw["mounts"]}
    assert mounts["/data/deep"] == {"destination": "/data/deep", "type": "bind",
                                    "source": str(src), "options": ["rbind", "rprivate", "ro"]}
    assert mounts["/data"]["options"] == ["rbind", "rprivate", "rw"]
    assert mounts["/opt"]["options"] == ["rbind", "rslave", "rw"]
    assert raw["linux"]["rootfsPropagation"] == "slave"
    assert mounts["/cache"]["options"] == ["noexec", "nosuid", "nodev", "size=1024k", "mode=700"]
    assert mounts["/run"]["options"] == ["nosuid", "nodev", "exec", "size=2m"]
    assert mounts["/dev/shm"]["type"] == "tmpfs" and mounts["/dev/shm"]["source"] == "tmpfs"
    assert mounts["/etc/hosts"] == {"destination": "/etc/hosts", "type": "bind",
                                    "source": etc["/etc/hosts"],
                                    "options": ["rbind", "rprivate", "ro"]}
    order = [m["destination"] for m in raw["mounts"]]
    assert order.index("/data") < order.index("/data/deep")


def test_mount_bind_source_must_exist(rootfs, tmp_path):
    with pytest.raises(InvalidArgument) as info:
        build(rootfs, "--mount", f"type=bind,src={tmp_path}/nope,dst=/x")
    assert str(info.value) == (f'invalid mount config for type "bind": bind source path does '
                               f"not exist: {tmp_path}/nope")


def test_devices(rootfs, tmp_path):
    raw = build(rootfs, "--device", "/dev/null:/dev/mynull:rw")
    check_spec(raw, str(tmp_path))
    dev = raw["linux"]["devices"][0]
    assert (dev["path"], dev["type"], dev["major"], dev["minor"]) == ("/dev/mynull", "c", 1, 3)
    assert raw["linux"]["resources"]["devices"][-1] == {
        "allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}
    with pytest.raises(InvalidArgument) as info:
        build(rootfs, "--device", "/dev/nonexistent-device")
    assert str(info.value) == ('error gathering device information while adding custom device '
                               '"/dev/nonexistent-device": no such file or directory')


def test_namespaces_host_modes(rootfs, tmp_path):
    raw = build(rootfs, "--network", "host", "--pid", "host", "--ipc", "host")
    check_spec(raw, str(tmp_path))
    assert [ns["type"] for ns in raw["linux"]["namespaces"]] == ["uts", "mount", "cgroup"]
    assert raw["hostname"] == os.uname().nodename
    shm = next(m for m in raw["mounts"] if m["destination"] == "/dev/shm")
    assert shm["type"] == "bind" and shm["source"] == "/dev/shm"
    raw = build(rootfs, "--uts", "host")
    check_spec(raw, str(tmp_path))
    assert "hostname" not in raw
    raw = build(rootfs, "-h", "box")
    assert raw["hostname"] == "box" and "HOSTNAME=box" in raw["process"]["env"]


def test_sysctls(rootfs, tmp_path):
    raw = build(rootfs, "--sysctl", "net.ipv4.ip_forward=1", "--sysctl", "kernel.shmmax=4096")
    check_spec(raw, str(tmp_path))
    assert raw["linux"]["sysctl"] == {"net.ipv4.ip_forward": "1", "kernel.shmmax": "4096"}
    with pytest.raises(InvalidArgument):
        build(rootfs, "--network", "host", "--sysctl", "net.ipv4.ip_forward=1")


def test_init(rootfs, tmp_path):
    init = tmp_path / "tini"
    init.write_text("")
    init.chmod(0o755)
    raw = build(rootfs, "--init", init_path=str(init))
    check_spec(raw, str(tmp_path))
    assert raw["process"]["args"] == [INIT_PATH, "--", "sh"]
    mount = next(m for m in raw["mounts"] if m["destination"] == INIT_PATH)
    assert mount["source"] == str(init) and "ro" in mount["options"]


def test_init_missing(rootfs, monkeypatch):
    monkeypatch.setattr("berth.engine.spec.INIT_CANDIDATES", ("/nonexistent/init",))
    with pytest.raises(NotFound):
        build(rootfs, "--init")


# ---------------------------------------------------------------- the default seccomp profile

def test_default_profile_shape():
    plain = seccomp_default.profile(DEFAULT_CAPS, "x86_64")
    allowed = set(plain["syscalls"][0]["names"])
    for name in ("read", "openat", "execve", "mmap", "futex", "clock_gettime", "rt_sigaction",
                 "sendmsg", "shmget", "chroot", "epoll_pwait", "setuid"):
        assert name in allowed, name
    for name in ("keyctl", "add_key", "request_key", "mount", "umount2", "pivot_root",
                 "kexec_load", "bpf", "perf_event_open", "ptrace", "reboot", "swapon",
                 "init_module", "finit_module", "delete_module", "unshare", "setns",
                 "clone", "clone3", "personality", "socket"):
        assert name not in allowed, name
    clone = next(r for r in plain["syscalls"] if r["names"] == ["clone"])
    assert clone["args"] == [{"index": 0, "value": 0x7E020000, "valueTwo": 0,
                              "op": "SCMP_CMP_MASKED_EQ"}]
    clone3 = next(r for r in plain["syscalls"] if r["names"] == ["clone3"])
    assert clone3 == {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
    assert plain["defaultAction"] == "SCMP_ACT_ERRNO" and plain["defaultErrnoRet"] == 1


def test_profile_grows_with_capabilities():
    admin = seccomp_default.profile(list(DEFAULT_CAPS) + ["CAP_SYS_ADMIN", "CAP_SYS_PTRACE"],
                                    "x86_64")
    allowed = set(admin["syscalls"][0]["names"])
    assert {"mount", "umount2", "unshare", "setns", "ptrace", "process_vm_readv"} <= allowed
    assert "keyctl" not in allowed
    assert {"names": ["clone", "clone3"], "action": "SCMP_ACT_ALLOW"} in admin["syscalls"]
    no_chroot = seccomp_default.profile(["CAP_CHOWN"], "x86_64")
    assert "chroot" not in no_chroot["syscalls"][0]["names"]


def test_default_profile_compiles():
    """libseccomp knows every name, and the filter builds."""
    pytest.importorskip("ctypes")
    from berth.runtime.seccomp import compile_filter

    for caps in (DEFAULT_CAPS, list(DEFAULT_CAPS) + ["CAP_SYS_ADMIN"]):
        raw = seccomp_default.profile(caps)
        spec = Spec.from_json({"ociVersion": "1.2.0", "root": {"path": "r"},
                               "linux": {"seccomp": raw}})
        try:
            filt = compile_filter(spec.linux.seccomp)
        except Exception as err:  # no libseccomp on this host
            pytest.skip(f"libseccomp unavailable: {err}")
        assert filt.unknown_syscalls == ()
        filt.release()
