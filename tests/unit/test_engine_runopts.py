"""`berth run` flags: values, Docker's grammar, and Docker's exact words for bad input.

The expected messages were taken from docker 28's CLI (client-side checks) and dockerd
(daemon-side checks) for the same command lines."""

import json

import pytest

from berth.flags import UsageError
from berth import units
from berth.engine.runopts import (
    RunOptions, host_config, parse_bind, parse_port_spec, parse_run_flags, parse_signal,
)
from berth.errors import InvalidArgument, Unsupported


def run(*words):
    return parse_run_flags(list(words))


def error(*words):
    with pytest.raises((InvalidArgument, Unsupported)) as info:
        run(*words)
    return str(info.value)


# ---------------------------------------------------------------- units

@pytest.mark.parametrize("text,value", [
    ("512m", 512 << 20), ("1g", 1 << 30), ("1.5GiB", 3 << 29), ("64 kb", 64 << 10),
    ("100", 100), ("1b", 1), ("2KB", 2048), ("1T", 1 << 40), ("0.5k", 512), ("5.", 5),
])
def test_ram_in_bytes(text, value):
    assert units.ram_in_bytes(text) == value


@pytest.mark.parametrize("text,message", [
    ("x", "invalid size: 'x'"), ("-1", "invalid size: '-1'"),
    ("1kbb", "invalid suffix: 'kbb'"), ("1.5xb", "invalid suffix: 'xb'"),
    ("1.2.3", 'strconv.ParseFloat: parsing "1.2.3": invalid syntax'),
])
def test_ram_in_bytes_errors(text, message):
    with pytest.raises(ValueError, match="^" + message.replace(".", r"\.") + "$"):
        units.ram_in_bytes(text)


@pytest.mark.parametrize("text,ns", [
    ("30s", 30 * 10**9), ("1m30s", 90 * 10**9), ("1.5h", 5400 * 10**9), ("-2ms", -2 * 10**6),
    ("0", 0), ("300us", 300_000), ("1h2m3.5s", 3723_500_000_000), (".5s", 500_000_000),
])
def test_parse_duration(text, ns):
    assert units.parse_duration(text) == ns


@pytest.mark.parametrize("text,message", [
    ("5", 'time: missing unit in duration "5"'), ("x", 'time: invalid duration "x"'),
    ("5q", 'time: unknown unit "q" in duration "5q"'), ("", 'time: invalid duration ""'),
])
def test_parse_duration_errors(text, message):
    with pytest.raises(ValueError) as info:
        units.parse_duration(text)
    assert str(info.value) == message


@pytest.mark.parametrize("text,nano", [("1.5", 1_500_000_000), ("3/2", 1_500_000_000),
                                       ("0.01", 10_000_000), ("2", 2_000_000_000)])
def test_parse_cpus(text, nano):
    assert units.parse_cpus(text) == nano


# ---------------------------------------------------------------- shape

def test_flags_stop_at_the_image():
    opts, image, cmd = run("-d", "--name", "web", "alpine", "ls", "-l", "--name", "x")
    assert image == "alpine" and cmd == ["ls", "-l", "--name", "x"]
    assert opts.detach and opts.name == "web" and opts.args == cmd


def test_bundled_booleans_and_defaults():
    opts, image, cmd = run("-it", "busybox")
    assert opts.interactive and opts.tty and not opts.detach
    assert cmd == [] and opts.restart == {"Name": "no", "MaximumRetryCount": 0}
    assert opts.sig_proxy and opts.pull == "missing" and opts.entrypoint is None


def test_needs_an_image():
    with pytest.raises(UsageError) as info:
        run("-d")
    assert str(info.value) == "'berth run' requires at least 1 argument"


def test_run_options_is_plain_data():
    opts = RunOptions(tty=True, memory=1 << 30)
    assert opts.tty and opts.memory == 1 << 30 and opts.cap_add == []
    with pytest.raises(TypeError):
        RunOptions(nonsense=1)


# ---------------------------------------------------------------- values

def test_resources():
    opts, _, _ = run("-m", "512m", "--memory-swap", "1g", "--memory-reservation", "256m",
                     "--cpus", "1.5", "-c", "512", "--cpuset-cpus", "0-1", "--pids-limit",
                     "100", "--shm-size", "128m", "alpine")
    assert (opts.memory, opts.memory_swap, opts.memory_reservation) == (
        512 << 20, 1 << 30, 256 << 20)
    assert opts.nano_cpus == 1_500_000_000 and opts.cpu_shares == 512
    assert opts.cpuset_cpus == "0-1" and opts.pids_limit == 100 and opts.shm_size == 128 << 20


def test_unlimited_swap():
    opts, _, _ = run("-m", "64m", "--memory-swap", "-1", "alpine")
    assert opts.memory_swap == -1


def test_env_and_env_file(tmp_path, monkeypatch):
    monkeypatch.setenv("FROM_HOST", "yes")
    monkeypatch.delenv("NOT_SET", raising=False)
    env_file = tmp_path / "env"
    env_file.write_text("# comment\n\n  A=1\nB=two words\nFROM_HOST\nNOT_SET\nC=\n")
    opts, _, _ = run("--env-file", str(env_file), "-e", "D=4", "-e", "FROM_HOST",
                     "-e", "NOT_SET", "alpine")
    assert opts.env == ["A=1", "B=two words", "FROM_HOST=yes", "C=", "D=4", "FROM_HOST=yes",
                        "NOT_SET"]


def test_labels(tmp_path):
    label_file = tmp_path / "labels"
    label_file.write_text("team=core\nflag\n")
    opts, _, _ = run("--label-file", str(label_file), "-l", "a=b", "--label", "c", "alpine")
    assert opts.labels == {"team": "core", "flag": "", "a": "b", "c": ""}


def test_entrypoint_empty_is_given():
    opts, _, _ = run("--entrypoint", "", "alpine")
    assert opts.entrypoint == ""
    opts, _, _ = run("--entrypoint=/bin/sh -c", "alpine")
    assert opts.entrypoint == "/bin/sh -c"


@pytest.mark.parametrize("text,policy", [
    ("no", {"Name": "no", "MaximumRetryCount": 0}),
    ("always", {"Name": "always", "MaximumRetryCount": 0}),
    ("unless-stopped", {"Name": "unless-stopped", "MaximumRetryCount": 0}),
    ("on-failure", {"Name": "on-failure", "MaximumRetryCount": 0}),
    ("on-failure:3", {"Name": "on-failure", "MaximumRetryCount": 3}),
])
def test_restart(text, policy):
    opts, _, _ = run("--restart", text, "alpine")
    assert opts.restart == policy


def test_ulimits():
    opts, _, _ = run("--ulimit", "nofile=1024:2048", "--ulimit", "nproc=50",
                     "--ulimit", "core=-1", "alpine")
    assert opts.ulimits == [{"Name": "nofile", "Soft": 1024, "Hard": 2048},
                            {"Name": "nproc", "Soft": 50, "Hard": 50},
                            {"Name": "core", "Soft": -1, "Hard": -1}]


def test_ports():
    opts, _, _ = run("-p", "8080:80", "-p", "127.0.0.1::53/udp", "-p", "9000-9001:90-91",
                     "--expose", "7000-7001", "alpine")
    assert opts.port_bindings == {
        "80/tcp": [{"HostIp": "", "HostPort": "8080"}],
        "53/udp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
        "90/tcp": [{"HostIp": "", "HostPort": "9000"}],
        "91/tcp": [{"HostIp": "", "HostPort": "9001"}],
    }
    assert set(opts.exposed_ports) == {"80/tcp", "53/udp", "90/tcp", "91/tcp", "7000/tcp",
                                       "7001/tcp"}


def test_port_host_range_for_one_container_port():
    assert parse_port_spec("8000-8010:80") == [("80/tcp", {"HostIp": "",
                                                            "HostPort": "8000-8010"})]
    assert parse_port_spec("[::1]:80:80") == [("80/tcp", {"HostIp": "::1", "HostPort": "80"})]


def test_mounts_and_binds():
    opts, _, _ = run("-v", "/srv:/data:ro,rshared", "--mount",
                     "type=bind,src=/tmp,dst=/t,readonly,bind-propagation=rslave",
                     "--mount", "type=tmpfs,target=/cache,tmpfs-size=64m,tmpfs-mode=1770",
                     "--tmpfs", "/run:rw,size=1m,exec", "alpine")
    assert opts.binds == ["/srv:/data:ro,rshared"]
    assert parse_bind(opts.binds[0]) == ("/srv", "/data", True, "rshared")
    assert opts.mounts == [
        {"Type": "bind", "Source": "/tmp", "Target": "/t", "ReadOnly": True,
         "BindOptions": {"Propagation": "rslave"}},
        {"Type": "tmpfs", "Source": "", "Target": "/cache", "ReadOnly": False,
         "TmpfsOptions": {"SizeBytes": 64 << 20, "Mode": 0o1770}},
    ]
    assert opts.tmpfs == {"/run": "rw,size=1m,exec"}


def test_security_opts(tmp_path):
    profile = tmp_path / "p.json"
    profile.write_text('{ "defaultAction": "SCMP_ACT_ALLOW",\n "syscalls": [] }')
    opts, _, _ = run("--security-opt", "no-new-privileges", "--security-opt",
                     f"seccomp={profile}", "--security-opt", "systempaths=unconfined",
                     "alpine")
    assert opts.security_opt == [
        "no-new-privileges=true",
        'seccomp={"defaultAction":"SCMP_ACT_ALLOW","syscalls":[]}',
        "systempaths=unconfined",
    ]
    opts, _, _ = run("--security-opt", "seccomp:unconfined", "alpine")
    assert opts.security_opt == ["seccomp=unconfined"]


def test_healthcheck_flags():
    opts, _, _ = run("--health-cmd", "curl -f localhost", "--health-interval", "5s",
                     "--health-retries", "3", "--health-timeout", "1m", "alpine")
    assert opts.healthcheck == {"Test": ["CMD-SHELL", "curl -f localhost"],
                                "Interval": 5 * 10**9, "Timeout": 60 * 10**9,
                                "StartPeriod": 0, "StartInterval": 0, "Retries": 3}
    opts, _, _ = run("--no-healthcheck", "alpine")
    assert opts.healthcheck == {"Test": ["NONE"]}
    opts, _, _ = run("alpine")
    assert opts.healthcheck is None


def test_devices_sysctls_and_more():
    opts, _, _ = run("--device", "/dev/fuse", "--device", "/dev/null:/dev/n:r",
                     "--device", "/dev/zero:rw", "--sysctl", "net.ipv4.ip_forward=1",
                     "--sysctl", "kernel.shmmax=1000", "--group-add", "audio",
                     "--dns", "1.1.1.1", "--add-host", "db:10.0.0.2", "--oom-score-adj",
                     "-500", "--network", "none", "--stop-signal", "SIGINT", "--stop-timeout",
                     "5", "--init", "alpine")
    assert opts.devices == [
        {"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rwm"},
        {"PathOnHost": "/dev/null", "PathInContainer": "/dev/n", "CgroupPermissions": "r"},
        {"PathOnHost": "/dev/zero", "PathInContainer": "/dev/zero", "CgroupPermissions": "rw"},
    ]
    assert opts.sysctls == {"net.ipv4.ip_forward": "1", "kernel.shmmax": "1000"}
    assert opts.group_add == ["audio"] and opts.dns == ["1.1.1.1"]
    assert opts.extra_hosts == ["db:10.0.0.2"] and opts.oom_score_adj == -500
    assert opts.network == "none" and opts.stop_signal == "SIGINT" and opts.stop_timeout == 5
    assert opts.init


def test_net_alias():
    opts, _, _ = run("--net", "none", "alpine")
    assert opts.network == "none"


def test_several_networks():
    opts, _, _ = run("--network", "a", "--network", "b", "--network-alias", "web", "--ip",
                     "10.1.2.3", "--mac-address", "02:42:0a:01:02:03", "alpine")
    assert opts.networks == ["a", "b"] and opts.network == "a"
    assert opts.network_aliases == ["web"] and opts.ip == "10.1.2.3"
    with pytest.raises(InvalidArgument, match="conflicting options"):
        run("--network", "host", "--network", "b", "alpine")
    with pytest.raises(InvalidArgument, match="invalid IPv4"):
        run("--ip", "10.1.2", "alpine")
    with pytest.raises(InvalidArgument, match="not a valid mac"):
        run("--mac-address", "02:42", "alpine")


def test_host_config_shape():
    opts, _, _ = run("--rm", "-m", "64m", "--cap-add", "NET_ADMIN", "--read-only",
                     "--log-opt", "max-size=10m", "alpine")
    hc = host_config(opts)
    assert hc["AutoRemove"] and hc["Memory"] == 64 << 20 and hc["ReadonlyRootfs"]
    assert hc["CapAdd"] == ["NET_ADMIN"] and hc["ShmSize"] == 64 << 20
    assert hc["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "10m"}}
    assert json.loads(json.dumps(hc)) == hc


@pytest.mark.parametrize("text,number", [("SIGTERM", 15), ("kill", 9), ("9", 9),
                                         ("SIGRTMIN+3", 37), ("USR1", 10)])
def test_signals(text, number):
    assert parse_signal(text) == number


# ---------------------------------------------------------------- Docker's words for bad input

@pytest.mark.parametrize("words,message", [
    (["-m", "x"], '''invalid argument "x" for "-m, --memory" flag: invalid size: 'x\''''),
    (["-m", "-1"], '''invalid argument "-1" for "-m, --memory" flag: invalid size: '-1\''''),
    (["-m", "1.5xb"], '''invalid argument "1.5xb" for "-m, --memory" flag: '''
                      "invalid suffix: 'xb'"),
    (["--memory-swap", "y"], '''invalid argument "y" for "--memory-swap" flag: '''
                             "invalid size: 'y'"),
    (["--shm-size", "x"], '''invalid argument "x" for "--shm-size" flag: invalid size: 'x\''''),
    (["--cpus", "abc"], 'invalid argument "abc" for "--cpus" flag: failed to parse abc as a '
                        'rational number'),
    (["--cpus", "1/3"], 'invalid argument "1/3" for "--cpus" flag: value is too precise'),
    (["--cpus", "1.0000000001"], 'invalid argument "1.0000000001" for "--cpus" flag: value is '
                                 'too precise'),
    (["--restart", "foo:x"], "invalid restart policy format: maximum retry count must be an "
                             "integer"),
    (["--restart", ":3"], "invalid restart policy format: no policy provided before colon"),
    (["--restart", "bogus"], "invalid restart policy: unknown policy 'bogus'; use one of 'no', "
                             "'always', 'on-failure', or 'unless-stopped'"),
    (["--restart", "always:3"], "invalid restart policy: maximum retry count can only be used "
                                "with 'on-failure'"),
    (["--rm", "--restart", "always"], "conflicting options: cannot specify both --restart and "
                                      "--rm"),
    (["-p", "abc"], "invalid containerPort: abc"),
    (["-p", "80:abc"], "invalid containerPort: abc"),
    (["-p", "70000:80"], "invalid hostPort: 70000"),
    (["-p", "1.2.3.4.5:80:80"], "invalid IP address: 1.2.3.4.5"),
    (["-p", "80/xyz"], "invalid proto: xyz"),
    (["-p", "8080-8081:80-82"], "invalid ranges specified for container and host Ports: 80-82 "
                                "and 8080-8081"),
    (["--ulimit", "nofile"], 'invalid argument "nofile" for "--ulimit" flag: invalid ulimit '
                             'argument: nofile'),
    (["--ulimit", "foo=1"], 'invalid argument "foo=1" for "--ulimit" flag: invalid ulimit '
                            'type: foo'),
    (["--ulimit", "nofile=a"], 'invalid argument "nofile=a" for "--ulimit" flag: '
                               'strconv.ParseInt: parsing "a": invalid syntax'),
    (["--ulimit", "nofile=2:1"], 'invalid argument "nofile=2:1" for "--ulimit" flag: ulimit '
                                 'soft limit must be less than or equal to hard limit: 2 > 1'),
    (["--ulimit", "nofile=1:2:3"], 'invalid argument "nofile=1:2:3" for "--ulimit" flag: too '
                                   'many limit value arguments - 1:2:3, can only have up to '
                                   'two, `soft[:hard]`'),
    (["--env-file", "/nonexistent/env"], "open /nonexistent/env: no such file or directory"),
    (["--label-file", "/nonexistent/l"], "open /nonexistent/l: no such file or directory"),
    (["-e", "=x"], 'invalid argument "=x" for "-e, --env" flag: invalid environment variable: '
                   '=x'),
    (["-l", "=x"], '''invalid argument "=x" for "-l, --label" flag: invalid label '=x': '''
                   "empty name"),
    (["--health-interval", "5"], 'invalid argument "5" for "--health-interval" flag: time: '
                                 'missing unit in duration "5"'),
    (["--health-interval", "x"], 'invalid argument "x" for "--health-interval" flag: time: '
                                 'invalid duration "x"'),
    (["--health-timeout", "5q"], 'invalid argument "5q" for "--health-timeout" flag: time: '
                                 'unknown unit "q" in duration "5q"'),
    (["--health-interval", "-1s"], "--health-interval cannot be negative"),
    (["--no-healthcheck", "--health-cmd", "x"], "--no-healthcheck conflicts with --health-* "
                                                "options"),
    (["--security-opt", "foo"], 'Invalid --security-opt: "foo"'),
    (["--security-opt", "seccomp"], 'Invalid --security-opt: "seccomp"'),
    (["--security-opt", "seccomp=/nonexistent"], "opening seccomp profile (/nonexistent) "
                                                 "failed: open /nonexistent: no such file or "
                                                 "directory"),
    (["--security-opt", "no-new-privileges=maybe"], 'invalid --security-opt 2: '
                                                    '"no-new-privileges=maybe"'),
    (["--security-opt", "foo=bar"], 'invalid --security-opt 2: "foo=bar"'),
    (["--sysctl", "kernel.foo=1"], '''invalid argument "kernel.foo=1" for "--sysctl" flag: '''
                                   "sysctl 'kernel.foo=1' is not allowed"),
    (["--sysctl", "foo"], '''invalid argument "foo" for "--sysctl" flag: sysctl 'foo' is '''
                          "not allowed"),
    (["--pids-limit", "x"], 'invalid argument "x" for "--pids-limit" flag: strconv.ParseInt: '
                            'parsing "x": invalid syntax'),
    (["-c", "x"], 'invalid argument "x" for "-c, --cpu-shares" flag: strconv.ParseInt: '
                  'parsing "x": invalid syntax'),
    (["--stop-timeout", "x"], 'invalid argument "x" for "--stop-timeout" flag: '
                              'strconv.ParseInt: parsing "x": invalid syntax'),
    (["--mount", "foo"], '''invalid argument "foo" for "--mount" flag: invalid field 'foo' '''
                         "must be a key=value pair"),
    (["--mount", "type=bind"], 'invalid argument "type=bind" for "--mount" flag: target is '
                               'required'),
    (["--mount", "type=tmpfs,target=/x,tmpfs-size=x"],
     'invalid argument "type=tmpfs,target=/x,tmpfs-size=x" for "--mount" flag: invalid value '
     'for tmpfs-size: x'),
    (["--mount", "type=tmpfs,target=/x,tmpfs-mode=abc"],
     'invalid argument "type=tmpfs,target=/x,tmpfs-mode=abc" for "--mount" flag: invalid '
     'value for tmpfs-mode: abc'),
    (["--mount", "type=bind,source=/tmp,target=/x,ro=maybe"],
     'invalid argument "type=bind,source=/tmp,target=/x,ro=maybe" for "--mount" flag: '
     'invalid value for ro: maybe'),
    (["--mount", "type=bind,source=/tmp,target=/x,foo=1"],
     '''invalid argument "type=bind,source=/tmp,target=/x,foo=1" for "--mount" flag: '''
     "unexpected key 'foo' in 'foo=1'"),
    (["--mount", "target=/x,bind-propagation=shared"],
     'invalid argument "target=/x,bind-propagation=shared" for "--mount" flag: cannot mix '
     "'bind-*' options with mount type 'volume'"),
    (["--mount", "type=bind,src=/tmp,target=/x,tmpfs-size=1m"],
     'invalid argument "type=bind,src=/tmp,target=/x,tmpfs-size=1m" for "--mount" flag: '
     "cannot mix 'tmpfs-*' options with mount type 'bind'"),
    (["--mount", "type=bind,target=/x"], 'invalid mount config for type "bind": field Source '
                                         'must not be empty'),
    (["--mount", "type=foo,target=/x"], 'invalid mount config for type "foo": mount type '
                                        'unknown'),
    (["-v", "a:b:c:d"], "invalid volume specification: 'a:b:c:d'"),
    (["-v", "/x:rw"], "invalid volume specification: '/x:rw'"),
    (["-v", "/tmp:/x:zz"], "invalid mode: zz"),
    (["-v", "/tmp:/x:ro,rw"], "invalid mode: ro,rw"),
    (["-v", "/tmp:rel"], '''invalid volume specification: '/tmp:rel': invalid mount config '''
                         '''for type "bind": invalid mount path: 'rel' mount path must be '''
                         "absolute"),
    (["--tmpfs", "rel"], "invalid mount path: 'rel' mount path must be absolute"),
    (["--device", "/dev/null:/x:q"], 'invalid argument "/dev/null:/x:q" for "--device" flag: '
                                     'bad mode specified: q'),
    (["--read-only=maybe"], 'invalid argument "maybe" for "--read-only" flag: '
                            'strconv.ParseBool: parsing "maybe": invalid syntax'),
    (["--pull", "sometimes"], '''invalid pull option: 'sometimes': must be one of "always", '''
                              '"missing" or "never"'),
    (["--log-driver", "none", "--log-opt", "a=b"], "invalid logging opts for driver none"),
    (["--log-opt", "foo"], "unknown log opt 'foo' for json-file log driver"),
    (["-m", "1m"], "Minimum memory limit allowed is 6MB"),
    (["--memory-swap", "1g"], "You should always set the Memory limit when using Memoryswap "
                              "limit, see usage"),
    (["-m", "1g", "--memory-swap", "512m"], "Minimum memoryswap limit should be larger than "
                                            "memory limit, see usage"),
    (["-m", "64m", "--memory-reservation", "128m"], "Minimum memory limit can not be less "
                                                    "than memory reservation limit, see usage"),
    (["--oom-score-adj", "2000"], "Invalid value 2000, range for oom score adj is "
                                  "[-1000, 1000]"),
    (["--stop-signal", "FOO"], "Invalid signal: FOO"),
    (["--name", "a/b"], "Invalid container name (a/b), only [a-zA-Z0-9][a-zA-Z0-9_.-] are "
                        "allowed"),
    (["--network", "host", "--sysctl", "net.ipv4.ip_forward=1"],
     "sysctl 'net.ipv4.ip_forward' is not allowed in host network namespace"),
    (["--cap-add", "foo"], 'invalid CapAdd: unknown capability: "CAP_FOO"'),
    (["--cap-drop", "cap_bar"], 'invalid CapDrop: unknown capability: "CAP_BAR"'),
])
def test_docker_words(words, message):
    assert error(*words, "alpine") == message


def test_env_file_errors(tmp_path):
    bad = tmp_path / "env"
    bad.write_text("A=1\n  B = 2\n")
    assert error("--env-file", str(bad), "alpine") == \
        f"invalid env file ({bad}): variable 'B ' contains whitespaces"
    assert error("--env-file", str(tmp_path), "alpine") == \
        f"invalid env file ({tmp_path}): read {tmp_path}: is a directory"


def test_seccomp_file_not_json(tmp_path):
    bad = tmp_path / "p.json"
    bad.write_text("A=1")
    assert error("--security-opt", f"seccomp={bad}", "alpine").startswith(
        f"compacting json for seccomp profile ({bad}) failed: ")


def test_cpus_beyond_the_host(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert error("--cpus", "3", "alpine") == \
        "Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available"


@pytest.mark.parametrize("words,words_in_message", [
    (["--log-driver", "syslog"], 'logging driver "syslog"'),
])
def test_not_yet(words, words_in_message):
    with pytest.raises(Unsupported) as info:
        run(*words, "alpine")
    assert words_in_message in str(info.value)


def test_volume_flags():
    from berth.engine import runopts, volumes

    opts, _, _ = run("-v", "data:/data:ro", "-v", "/anon", "--mount",
                     "type=volume,src=v2,dst=/v2,volume-nocopy,volume-label=a=b",
                     "--mount", "type=volume,dst=/v3,readonly", "alpine")
    planned = volumes.plan({"Volumes": {"/img": {}, "/anon": {}}}, runopts.host_config(opts))
    got = {(p["name"], p["dest"], p["ro"], p["nocopy"]) for p in planned}
    assert got == {("data", "/data", True, False), ("", "/anon", False, False),
                   ("v2", "/v2", False, True), ("", "/v3", True, False),
                   ("", "/img", False, False)}
    opts, _, _ = run("-v", "a:/x", "--tmpfs", "/x", "alpine")
    with pytest.raises(InvalidArgument, match="Duplicate mount point: /x"):
        volumes.plan({}, runopts.host_config(opts))


def test_volume_options():
    from berth.engine import volumes

    with pytest.raises(InvalidArgument, match='invalid option: "bogus"'):
        volumes.check_options({"bogus": "1"})
    with pytest.raises(InvalidArgument, match='missing required option: "device"'):
        volumes.check_options({"type": "tmpfs"})
    volumes.check_options({"type": "tmpfs", "device": "tmpfs", "o": "size=1m"})
    with pytest.raises(InvalidArgument, match="includes invalid characters"):
        volumes.check_name("a/b")
    assert volumes._device_mount({"type": "none", "o": "bind", "device": "/srv"}, "/d",
                                 True) == {"destination": "/d", "type": "bind",
                                           "source": "/srv", "options": ["rbind", "ro"]}


def test_flag_errors_are_usage_errors():
    with pytest.raises(UsageError):
        run("-m", "x", "alpine")
    with pytest.raises(UsageError) as info:
        run("--bogus", "alpine")
    assert str(info.value) == "unknown flag: --bogus"
