"""berth-oci against the container-escape classes runc has had CVEs for, one group each.

1. CVE-2019-5736: overwriting the runtime's executable from inside (the interpreter copy is
   on a read-only bind mount; the runtime's processes in the container are non-dumpable).
2. CVE-2024-21626: host fds leaked into the container, a cwd outside the root.
3. CVE-2019-16884: mounts over /proc (or through a symlinked /proc or /sys).
4. CVE-2021-30465: mount destinations through symlinks that point out of the rootfs.
5. Abstract unix sockets (reachable from any process in the host's network namespace).
6. A /dev symlink in the image.

Every test says how it was checked to fail when the protection it covers is taken away;
each of those checks was run once by hand with the protection disabled locally.
"""
import os
import shutil
import socket
import subprocess
import sys
import threading

import pytest

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "src")

# What the host's python3 needs to start inside a container: the same paths, read-only.
HOST_PYTHON_PATHS = ("/usr/lib/python3.11", "/usr/lib/x86_64-linux-gnu",
                     "/lib/x86_64-linux-gnu", "/lib64")


# ---- helpers

def _mount(config, destination, type_="tmpfs", source=None, options=()):
    config["mounts"].append({"destination": destination, "type": type_,
                             "source": source or type_, "options": list(options)})


def _shell(script):
    return ["/bin/sh", "-c", script]


def _no_netns(config):
    config["linux"]["namespaces"] = [ns for ns in config["linux"]["namespaces"]
                                     if ns["type"] != "network"]


def _host_mounts():
    """The host's mount points (mountinfo field 5), as a sorted list."""
    with open("/proc/self/mountinfo") as f:
        return sorted(line.split()[4] for line in f)


def _is_mount_point(path):
    return path in _host_mounts()


def _running_pid(oci, cid):
    import json
    return json.loads(oci("state", cid).stdout)["pid"]



def _fail_line(proc):
    assert proc.returncode != 0, proc.stdout + proc.stderr
    return proc.stderr.strip()


@pytest.fixture
def hostile(make_bundle):
    """make(args, setup, mutate) -> bundle with a private rootfs copy that SETUP(rootfs) edits."""
    def make(args=("true",), setup=None, mutate=None):
        bundle = make_bundle(args=args, readonly=False, mutate=mutate)
        if setup is not None:
            setup(os.path.join(bundle, "rootfs"))
        return bundle
    return make


# ---- 1. CVE-2019-5736: the runtime's interpreter is read-only, its processes non-dumpable

def _mounts_at(path):
    """Split mountinfo lines whose mount point is PATH (the last one is the one in effect)."""
    with open("/proc/self/mountinfo") as f:
        return [line.split() for line in f if line.split()[4] == path]


@pytest.fixture
def private_oci(tmp_path, oci):
    """``oci`` running a berth-oci installed under a fresh prefix, whose interpreter copy no
    call has protected yet; .interpreter is that copy. Afterwards the read-only binds over it
    are lifted and the prefix removed.
    """
    prefix = tmp_path / "prefix"
    if SRC not in sys.path:
        sys.path.insert(0, SRC)
    from berth.runtime import install
    launcher = install.install(str(prefix), "/usr/bin/python3")
    oci.prefix = [launcher]
    oci.interpreter = str(prefix / "lib" / "berth" / "python3")
    try:
        yield oci
    finally:
        # The containers go first: their processes run on the copy.
        from tests.conftest import cleanup_oci_root
        cleanup_oci_root(oci.root)
        install._unprotect(oci.interpreter)
        shutil.rmtree(prefix, ignore_errors=True)


def test_create_puts_the_interpreter_on_a_readonly_mount(private_oci, make_bundle,
                                                         container_id):
    # Checked: with ensure_readonly_interpreter() returning at once, the copy stays writable
    # and the assertions after create fail.
    oci = private_oci
    assert not os.statvfs(oci.interpreter).f_flag & os.ST_RDONLY
    oci("create", "--bundle", make_bundle(args=["true"]), container_id)
    assert os.statvfs(oci.interpreter).f_flag & os.ST_RDONLY
    mounts = _mounts_at(oci.interpreter)
    assert mounts and "ro" in mounts[-1][5].split(","), mounts
    # The init waiting for `start` runs on the copy, from the read-only mount.
    pid = _running_pid(oci, container_id)
    assert os.readlink(f"/proc/{pid}/exe") == oci.interpreter
    assert os.statvfs(f"/proc/{pid}/exe").f_flag & os.ST_RDONLY


def test_installed_interpreter_is_readonly_after_create(oci, make_bundle, container_id):
    # The launcher the other tests use: after any create its interpreter is read-only.
    # Checked together with the test above (same guard).
    if oci.prefix[0] != "/usr/local/bin/berth-oci":
        pytest.skip("berth-oci is not the installed launcher")
    oci("create", "--bundle", make_bundle(args=["true"]), container_id)
    interpreter = "/usr/local/lib/berth/python3"
    assert os.statvfs(interpreter).f_flag & os.ST_RDONLY
    assert "ro" in _mounts_at(interpreter)[-1][5].split(",")


def _host_python_config(config):
    for path in HOST_PYTHON_PATHS:
        _mount(config, path, "bind", path, ["rbind", "ro"])


@pytest.fixture
def python_container(private_oci, hostile, container_id):
    """A running container in which the host's interpreter (and so the runtime's) can start."""
    bundle = hostile(args=["sleep", "1000"], mutate=_host_python_config)
    private_oci("run", "-d", "--bundle", bundle, container_id)
    return private_oci, container_id


def _exec_python(oci, cid, code, *flags):
    """Run the runtime's own interpreter in the container: /proc/self/exe of the exec helper."""
    return oci("exec", *flags, cid, "/proc/self/exe", "-IS", "-c", code, check=False)


def test_exec_of_the_runtime_interpreter_cannot_write_it(python_container):
    # /proc/self/exe, resolved by the exec helper as it execs, is the runtime's interpreter:
    # the program now running in the container IS that file.
    oci, cid = python_container
    proc = _exec_python(oci, cid, "import os; print(os.readlink('/proc/self/exe'))")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == oci.interpreter
    # Checked: without the read-only bind the file's mount is writable; both of these fail.
    proc = _exec_python(oci, cid, "import os; print(os.statvfs('/proc/self/exe').f_flag)")
    assert int(proc.stdout) & os.ST_RDONLY, proc.stderr
    # O_TRUNC asks the mount for write access before anything else, so the answer is EROFS
    # whatever the caps. Checked: without the bind it is EACCES (no CAP_DAC_OVERRIDE) or
    # ETXTBSY, never EROFS. ETXTBSY also stops the truncation: the process runs the file.
    reopen = ("import os; fd = os.open('/proc/self/exe', os.O_PATH); "
              "os.open(f'/proc/self/fd/{fd}', os.O_WRONLY | os.O_TRUNC)")
    for flags in ((), ("--cap", "CAP_DAC_OVERRIDE")):
        proc = _exec_python(oci, cid, reopen, *flags)
        assert proc.returncode != 0
        assert "Read-only file system" in proc.stderr, proc.stderr
    # A plain O_WRONLY open of a running executable meets ETXTBSY before the mount's
    # read-only flag (or EACCES without CAP_DAC_OVERRIDE): it must fail, never open.
    proc = _exec_python(oci, cid, "import os; os.open('/proc/self/exe', os.O_WRONLY)",
                        "--cap", "CAP_DAC_OVERRIDE")
    assert proc.returncode != 0
    assert any(word in proc.stderr for word in
               ("Read-only file system", "Text file busy", "Permission denied")), proc.stderr


def test_waiting_init_is_not_dumpable(oci, make_bundle, container_id):
    # The init is the runtime's interpreter until `start`. A container process with the same
    # uid and capabilities must not reach /proc/1/exe of it (nor its environ).
    # Checked: this still passes without PR_SET_DUMPABLE 0 in init.intermediate: by the time
    # the init waits, set_identity has dropped capabilities and the kernel has made it
    # non-dumpable itself (commit_creds, fs.suid_dumpable=0). It guards the property, not
    # that line; the window the line covers (rootfs set-up, hooks) has no deterministic test.
    oci("create", "--bundle", make_bundle(args=["true"]), container_id)
    proc = oci("exec", container_id, "/bin/sh", "-c",
               "readlink /proc/1/exe; echo rc=$?; cat /proc/1/environ >/dev/null; echo rc=$?",
               check=False)
    assert proc.returncode == 0, proc.stderr
    assert "python" not in proc.stdout, proc.stdout
    assert proc.stdout.split().count("rc=1") == 2, proc.stdout + proc.stderr


# ---- 2. CVE-2024-21626: no host fd reaches the container; the cwd stays inside the root

@pytest.fixture
def host_dirfd(tmp_path):
    """An open directory fd on a host directory, at a fixed number the runtime inherits."""
    (tmp_path / "host-secret").mkdir()
    (tmp_path / "host-secret" / "HOST-FILE").write_text("host\n")
    fd = os.open(tmp_path / "host-secret", os.O_RDONLY | os.O_DIRECTORY)
    high = os.dup2(fd, 42, inheritable=True)
    os.close(fd)
    try:
        yield high
    finally:
        os.close(high)


def _oci_with_fd(oci, fd, *args, as_fd=None):
    """berth-oci ARGS with FD open in it (as fd AS_FD if given), as a leaky caller leaves it.

    Output goes through files: after `run -d` the container holds the runtime's stdout.
    """
    import tempfile

    def child():
        if as_fd is not None:
            os.dup2(fd, as_fd)

    # close_fds=False: pass_fds would close AS_FD after child() made it. Python opens its
    # own fds non-inheritable, so only FD (and AS_FD) reach berth-oci.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.run(oci.argv(*args), stdin=subprocess.DEVNULL, stdout=out,
                              stderr=err, close_fds=False, preexec_fn=child, timeout=60,
                              env=oci.env)
        out.seek(0)
        err.seek(0)
        proc.stdout = out.read().decode(errors="replace")
        proc.stderr = err.read().decode(errors="replace")
    return proc


def _fd_listing(stdout):
    """{fd: target} from `ls -l /proc/self/fd` output (busybox format)."""
    out = {}
    for line in stdout.splitlines():
        if " -> " in line:
            name, target = line.split(" -> ", 1)
            out[int(name.split()[-1])] = target.strip()
    return out


def test_leaked_host_fd_does_not_reach_run_or_exec(oci, make_bundle, container_id,
                                                   host_dirfd):
    # Checked: with close_fds_except() doing nothing, fd 42 (the host directory) shows up in
    # both listings and the test fails.
    bundle = make_bundle(args=["/bin/sh", "-c", "ls -l /proc/self/fd/; sleep 1000"])
    proc = _oci_with_fd(oci, host_dirfd, "run", "-d", "--bundle", bundle, container_id)
    assert proc.returncode == 0, proc.stderr
    proc = _oci_with_fd(oci, host_dirfd, "exec", container_id, "ls", "-l", "/proc/self/fd/")
    assert proc.returncode == 0, proc.stderr
    fds = _fd_listing(proc.stdout)
    # ls opens /proc/self/fd itself (fd 3); nothing else besides stdio.
    assert set(fds) <= {0, 1, 2, 3}, fds
    assert host_dirfd not in fds
    assert not any("host-secret" in t for t in fds.values()), fds
    # The init's listing went to the runtime's stdout, which the test did not capture:
    # ask the init through /proc/1/fd.
    proc = oci("exec", container_id, "ls", "-l", "/proc/1/fd/")
    fds = _fd_listing(proc.stdout)
    assert set(fds) <= {0, 1, 2}, fds
    assert not any("host-secret" in t for t in fds.values()), fds


def _no_host_escape(proc):
    """The run either failed, or its process printed a cwd and listing inside the root."""
    if proc.returncode != 0:
        return
    assert "HOST-FILE" not in proc.stdout, proc.stdout
    assert "host-secret" not in proc.stdout, proc.stdout


@pytest.mark.parametrize("fd_number", ["leaked", 3, 4, 5, 6, 7, 8])
def test_cwd_through_proc_self_fd_fails_in_run(oci, make_bundle, container_id, host_dirfd,
                                               fd_number):
    # fd 3..8 also cover the fds the init itself holds while it chdirs (sync pipes, fifo).
    # Checked: with enter_cwd's check removed and close_fds_except() doing nothing, the leaked
    # fd case runs in the host directory and lists HOST-FILE.
    n = host_dirfd if fd_number == "leaked" else fd_number

    def mutate(config):
        config["process"]["cwd"] = f"/proc/self/fd/{n}"

    bundle = make_bundle(args=["/bin/sh", "-c", "pwd; ls -a . ..; ls /proc/self/cwd/"],
                         mutate=mutate)
    proc = _oci_with_fd(oci, host_dirfd, "run", "--bundle", bundle, container_id)
    _no_host_escape(proc)
    if fd_number == "leaked":
        assert proc.returncode != 0, proc.stdout
        assert "process.cwd" in proc.stderr, proc.stderr


@pytest.mark.parametrize("fd_number", ["leaked", 3, 4, 5, 6, 7, 8])
def test_cwd_through_proc_self_fd_fails_in_exec(oci, make_bundle, container_id, host_dirfd,
                                                fd_number):
    # Checked as above, through `exec --cwd`.
    n = host_dirfd if fd_number == "leaked" else fd_number
    oci("run", "-d", "--bundle", make_bundle(args=["sleep", "1000"]), container_id)
    proc = _oci_with_fd(oci, host_dirfd, "exec", "--cwd", f"/proc/self/fd/{n}",
                        container_id, "/bin/sh", "-c", "pwd; ls -a . ..; ls /proc/self/cwd/")
    _no_host_escape(proc)
    if fd_number == "leaked":
        assert proc.returncode != 0, proc.stdout
        assert "process.cwd" in proc.stderr, proc.stderr


def test_preserved_host_dir_fd_as_cwd_is_refused(oci, make_bundle, container_id,
                                                 host_dirfd):
    # --preserve-fds passes a host directory on purpose; using it as the cwd must still be
    # refused (the chdir succeeds, the check after it sees a cwd outside the root).
    # Checked: with enter_cwd's getcwd check removed, `pwd` and `ls` run in the host dir.
    def mutate(config):
        config["process"]["cwd"] = "/proc/self/fd/3"

    bundle = make_bundle(args=["/bin/sh", "-c", "pwd; ls"], mutate=mutate)
    proc = _oci_with_fd(oci, host_dirfd, "run", "--preserve-fds", "1", "--bundle", bundle,
                        container_id, as_fd=3)
    _no_host_escape(proc)
    assert proc.returncode != 0, proc.stdout
    assert "outside the container's root" in proc.stderr, proc.stderr


def test_preserve_fds_range_does_not_lend_the_runtimes_own_fds(oci, make_bundle,
                                                               container_id):
    # --preserve-fds 2 with nothing passed at fd 3 and 4: those numbers then hold the
    # runtime's own fds (the state directory's lock is a host directory) and the init keeps
    # them until execve. cwd through them must be refused all the same.
    # Checked: with enter_cwd's getcwd check removed, the run succeeds with the state
    # directory (config.json, the state file) as the cwd.
    for n in (3, 4):
        def mutate(config, n=n):
            config["process"]["cwd"] = f"/proc/self/fd/{n}"

        bundle = make_bundle(args=["/bin/sh", "-c", "pwd; ls -a"], mutate=mutate)
        proc = oci("run", "--preserve-fds", "2", "--bundle", bundle, f"{container_id}-{n}",
                   check=False)
        names = proc.stdout.split()
        assert "state" not in names and "config.json" not in names, proc.stdout


# ---- 3. CVE-2019-16884: nothing is mounted over /proc, nor through a symlinked /proc, /sys

def _assert_nothing_left(oci, cid):
    assert cid not in oci.container_ids()
    assert not os.path.exists(os.path.join(oci.root, cid))


@pytest.mark.parametrize("dest,type_,source", [
    ("/proc/self/attr", "tmpfs", "tmpfs"),
    ("/proc/sys", "tmpfs", "tmpfs"),
    ("/proc/sys", "bind", "/proc/sys"),
    ("/proc/self/attr/exec", "bind", "/dev/null"),
    ("/proc", "tmpfs", "tmpfs"),
])
def test_mount_over_proc_is_refused(oci, make_bundle, container_id, dest, type_, source):
    # Checked: with _check_dest's /proc rules removed, the tmpfs over /proc/sys and the bind
    # over /proc/self/attr/exec are made and the run succeeds.
    options = ["rbind"] if type_ == "bind" else []
    bundle = make_bundle(args=["true"],
                         mutate=lambda c: _mount(c, dest, type_, source, options))
    proc = oci("run", "--bundle", bundle, container_id, check=False)
    line = _fail_line(proc)
    assert "/proc" in line and ("not allowed" in line or "refus" in line), line
    _assert_nothing_left(oci, container_id)


@pytest.mark.parametrize("name,kind", [("proc", "proc"), ("sys", "sysfs")])
def test_proc_and_sysfs_are_not_mounted_through_a_symlink(oci, hostile, container_id,
                                                          tmp_path, name, kind):
    # Checked: with the symlink test in _check_dest removed, proc is mounted on the fake
    # directory the symlink names (the run succeeds).
    fake = f"/tmp/fake{name}-{container_id}"
    host_fake = fake  # what an escaping runtime would create or mount on the host

    def setup(rootfs):
        os.rmdir(os.path.join(rootfs, name))
        os.makedirs(rootfs + fake)
        os.symlink(fake, os.path.join(rootfs, name))

    bundle = hostile(args=["true"], setup=setup)
    before = _host_mounts()
    proc = oci("run", "--bundle", bundle, container_id, check=False)
    line = _fail_line(proc)
    assert "symlink" in line and kind in line, line
    _assert_nothing_left(oci, container_id)
    assert not os.path.lexists(host_fake)
    assert os.listdir(os.path.join(bundle, "rootfs") + fake) == []
    ours = (str(tmp_path), host_fake)  # other processes may mount elsewhere meanwhile
    assert [m for m in _host_mounts() if m not in before and m.startswith(ours)] == []


def test_bind_over_allowed_proc_file_works(oci, make_bundle, container_id, tmp_path):
    # The lxcfs case: a file bound over /proc/cpuinfo is allowed and seen in the container.
    fake = tmp_path / "cpuinfo"
    fake.write_text("berth fake cpuinfo\n")
    bundle = make_bundle(args=["cat", "/proc/cpuinfo"],
                         mutate=lambda c: _mount(c, "/proc/cpuinfo", "bind", str(fake),
                                                 ["bind", "ro"]))
    proc = oci("run", "--bundle", bundle, container_id)
    assert proc.stdout == "berth fake cpuinfo\n"


# ---- 4. CVE-2021-30465: a mount destination through a symlink stays inside the rootfs

@pytest.fixture
def host_target(tmp_path):
    """An empty host directory an escaping mount would land on; checked untouched after."""
    path = tmp_path / "host-target"
    path.mkdir()
    before = _host_mounts()
    yield str(path)
    assert os.listdir(path) == []
    assert not _is_mount_point(str(path))
    assert [m for m in _host_mounts() if m not in before and m.startswith(str(tmp_path))] == []


def _escape_links(host_target):
    depth = "../" * 12
    return {
        # name in the rootfs: (link text, destination to mount on)
        "abs-dotdot": ("/../../../../../.." + host_target, "/data"),
        "relative": (depth.rstrip("/") + host_target, "/data"),
        "root": ("/", "/data" + host_target),
        "middle": ("/../../../../..", "/data" + host_target + "/sub"),
    }


@pytest.mark.parametrize("case", ["abs-dotdot", "relative", "root", "middle"])
@pytest.mark.parametrize("exists", [True, False], ids=["target-exists", "dangling"])
def test_mount_through_escaping_symlink_lands_inside(oci, hostile, container_id, tmp_path,
                                                     host_target, case, exists):
    # Checked: with _target opening rootfs + dest by host path (following the links on the
    # host), every case fails: the bind lands on the host's host-target in the init's mount
    # namespace (out of the container's sight) and "middle" creates host-target/sub on the
    # host. Before _create_in_root, the "dangling" cases failed with EEXIST.
    link, dest = _escape_links(host_target)[case]
    marker = tmp_path / "marker"
    marker.mkdir()
    (marker / "MARKER").write_text("inside\n")
    inside = host_target + ("/sub" if case == "middle" else "")

    def setup(rootfs):
        os.symlink(link, os.path.join(rootfs, "data"))
        if exists:
            os.makedirs(rootfs + inside)

    seen_at = "/data" if case in ("abs-dotdot", "relative") else dest
    bundle = hostile(args=["/bin/sh", "-c", f"cat {seen_at}/MARKER {inside}/MARKER"],
                     setup=setup,
                     mutate=lambda c: _mount(c, dest, "bind", str(marker), ["rbind"]))
    proc = oci("run", "--bundle", bundle, container_id, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.endswith("inside\ninside\n")
    # The directories created for the mount are in the rootfs copy, not on the host.
    assert os.path.isdir(os.path.join(bundle, "rootfs") + inside)


def test_target_walk_refuses_loops_and_dotdot(tmp_path):
    # Unit level: Rootfs._target opens destinations below the root fd only. A symlink loop
    # and a '..' in a path still to create are errors, a '..' in a link stays in the root.
    if SRC not in sys.path:
        sys.path.insert(0, SRC)
    from berth.errors import InvalidArgument
    from berth.runtime.rootfs import Rootfs

    root = tmp_path / "rootfs"
    root.mkdir()
    os.symlink("loop", root / "loop")
    os.symlink("../../..", root / "up")
    r = Rootfs(None, str(tmp_path), str(root))
    r.rootfd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        with pytest.raises(InvalidArgument):
            r._target("/loop/x", is_dir=True, where="mounts[0]")
        with pytest.raises(InvalidArgument):
            r._target("/new/../../x", is_dir=True, where="mounts[0]")
        fd = r._target("/up/up/escaped", is_dir=True, where="mounts[0]")
        try:
            assert os.readlink(f"/proc/self/fd/{fd}") == str(root / "escaped")
        finally:
            os.close(fd)
        assert not os.path.exists(tmp_path.parent / "escaped")
    finally:
        os.close(r.rootfd)


# ---- 6. A /dev symlink in the image

@pytest.mark.parametrize("exists", [True, False], ids=["target-exists", "dangling"])
def test_dev_symlink_is_not_followed_out(oci, hostile, container_id, host_target, exists):
    # /dev -> the host directory: the /dev tmpfs, its nodes and /dev/pts land in the rootfs,
    # where the link resolves inside the root; never on the host.
    # Checked: with _target opening rootfs + dest by host path, the tmpfs goes on the host's
    # host-target (in the init's mount namespace) and the container finds no /dev/null.
    def setup(rootfs):
        shutil.rmtree(os.path.join(rootfs, "dev"))
        os.symlink(host_target, os.path.join(rootfs, "dev"))
        if exists:
            os.makedirs(rootfs + host_target)

    bundle = hostile(args=["/bin/sh", "-c", "ls /dev/ && echo x > /dev/null && echo written"],
                     setup=setup)
    proc = oci("run", "--bundle", bundle, container_id, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "null" in proc.stdout.split() and "written" in proc.stdout
    assert "pts" in proc.stdout.split()


@pytest.mark.skipif(not os.path.islink("/var/run"), reason="needs the host's /var/run link")
def test_terminal_is_not_opened_through_a_dev_symlink_on_the_host(oci, hostile, container_id):
    # /dev -> "/var/run/../dev": inside the root that is /var/dev (a plain directory in the
    # image), on the host it is the host's /dev (/var/run -> /run). The pty must come from
    # the container's devpts, never from the host's /dev/pts/ptmx.
    def setup(rootfs):
        shutil.rmtree(os.path.join(rootfs, "dev"))
        os.makedirs(os.path.join(rootfs, "var", "run"))
        os.makedirs(os.path.join(rootfs, "var", "dev"))
        os.symlink("/var/run/../dev", os.path.join(rootfs, "dev"))

    import tempfile
    sock_dir = tempfile.mkdtemp(prefix="berth-cs-", dir="/tmp")
    path = os.path.join(sock_dir, "console.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    listener.settimeout(30)
    try:
        bundle = hostile(args=["true"], setup=setup, mutate=_terminal)
        proc = oci("create", "--console-socket", path, "--bundle", bundle, container_id,
                   check=False)
        if proc.returncode != 0:
            return  # refusing is fine
        conn, _ = listener.accept()
        with conn:
            _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
        try:
            assert os.fstat(fds[0]).st_dev != os.stat("/dev/pts/ptmx").st_dev, (
                "the container's pty came from the host's devpts")
        finally:
            for fd in fds:
                os.close(fd)
    finally:
        listener.close()
        shutil.rmtree(sock_dir, ignore_errors=True)

# ---- 5. No abstract unix sockets (any process in the network namespace could connect)

def _abstract_sockets(pid):
    """{inode: name} of the abstract unix sockets in the network namespace of PID."""
    out = {}
    try:
        with open(f"/proc/{pid}/net/unix") as f:
            next(f)
            for line in f:
                fields = line.split()
                if len(fields) >= 8 and fields[7].startswith("@"):
                    out[int(fields[6])] = fields[7]
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def _socket_inodes(pid):
    inodes = set()
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{name}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    except (FileNotFoundError, ProcessLookupError):
        pass
    return inodes


def _runtime_pids(extra=()):
    """Every process running berth-oci's interpreter (any test's), plus EXTRA."""
    interpreters = {"/usr/local/lib/berth/python3"}
    pids = set(extra)
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.readlink(f"/proc/{name}/exe") in interpreters:
                    pids.add(int(name))
            except OSError:
                continue
    return pids


def _wait_for(predicate, what, tries=600):
    import time
    for _ in range(tries):
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"gave up waiting for {what}")


def _cmdline_pids(word):
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    if word.encode() in f.read().split(b"\0"):
                        pids.append(int(name))
            except OSError:
                continue
    return pids


def _terminal(config):
    config["process"]["terminal"] = True


def _held_abstract_sockets(pids):
    """{pid: [names]} of the abstract unix sockets each of PIDS holds.

    A socket is listed in the table of the netns it was made in: the runtime's sockets held
    by an init in a new netns are in the host's table, not the init's.
    """
    host = _abstract_sockets("self")
    out = {}
    for pid in pids:
        abstract = {**host, **_abstract_sockets(pid)}
        names = sorted(abstract[i] for i in _socket_inodes(pid) if i in abstract)
        if names:
            out[pid] = names
    return out


def _snapshot_hook(config, out):
    """A createRuntime hook: while it runs, the runtime (its parent) and the init wait for
    it, still holding every fd they use for the set-up; it records their abstract sockets.
    """
    config.setdefault("hooks", {})["createRuntime"] = [{
        "path": "/usr/bin/python3",
        "args": ["python3", os.path.abspath(__file__), "--snapshot", out],
        "env": [f"PYTHONPATH={SRC}"]}]


def test_create_with_console_socket_binds_no_abstract_socket(oci, make_bundle, container_id,
                                                             tmp_path):
    # Checked: with console.connect() binding its socket to "\0berth-cs-<pid>" before it
    # connects, the snapshot finds it in the runtime and this fails.
    import json
    import tempfile
    sock_dir = tempfile.mkdtemp(prefix="berth-cs-", dir="/tmp")
    path = os.path.join(sock_dir, "console.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    received = []

    def accept():
        conn, _ = listener.accept()
        with conn:
            _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
            received.extend(fds)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    snapshot = tmp_path / "snapshot.json"
    try:
        bundle = make_bundle(args=["true"], mutate=lambda c: (
            _terminal(c), _snapshot_hook(c, str(snapshot))))
        oci("create", "--console-socket", path, "--bundle", bundle, container_id)
        thread.join(timeout=30)
        assert received, "no pty master came over the console socket"
        seen = json.loads(snapshot.read_text())
        assert len(seen["pids"]) == 2, seen
        assert seen["held"] == {}, seen
        pid = _running_pid(oci, container_id)
        assert _held_abstract_sockets(_runtime_pids([pid])) == {}
    finally:
        for fd in received:
            os.close(fd)
        listener.close()
        shutil.rmtree(sock_dir, ignore_errors=True)


def test_foreground_terminal_run_and_exec_bind_no_abstract_socket(oci, make_bundle,
                                                                  container_id):
    # `run` with a terminal and no console socket relays the pty itself; so does a
    # foreground `exec -t`. While both relay, no runtime process holds an abstract socket.
    # Checked: with console.socketpair() replaced by a listener bound to "\0berth-test-<pid>"
    # and a connect to it, the run's runtime process fails the check (and the source grep).
    bundle = make_bundle(args=["sleep", "1000"], mutate=_terminal)
    run = subprocess.Popen(oci.argv("run", "--bundle", bundle, container_id),
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, env=oci.env)
    exec_ = None
    try:
        _wait_for(lambda: oci("state", container_id, check=False).stdout.count('"running"'),
                  "the container to run")
        exec_ = subprocess.Popen(oci.argv("exec", "-t", container_id, "sleep", "1001"),
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, env=oci.env)
        _wait_for(lambda: _cmdline_pids("1001"), "the exec'd process")
        pids = _runtime_pids([run.pid, exec_.pid, _running_pid(oci, container_id)])
        assert run.pid in pids and exec_.pid in pids
        assert _held_abstract_sockets(pids) == {}
    finally:
        oci("kill", container_id, "KILL", check=False)
        for p in (exec_, run):
            if p is not None:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def test_source_has_no_abstract_socket_addresses():
    # An abstract address is a name starting with a NUL byte: any such literal next to a
    # socket call is a regression. The runtime binds no socket at all; the engine's monitor
    # binds path-based ones (its attach and console sockets), in files with 0600 modes.
    import re
    pattern = re.compile(r"""(bind|connect|sendto|socket)\w*\(\s*(b?["'](\\0|\\x00)|"\0)""")
    found = []
    for dirpath, _, files in os.walk(os.path.join(SRC, "berth")):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                with open(path, encoding="utf-8") as f:
                    text = f.read()
                found += [f"{path}: {m.group(0)}" for m in pattern.finditer(text)]
                if ".bind(" in text and os.sep + "runtime" + os.sep in path:
                    found.append(f"{path}: binds a socket")
    assert found == []


def _snapshot(out):
    """The createRuntime hook's body: record the abstract sockets the runtime and init hold."""
    import json
    state = json.load(sys.stdin)
    pids = [os.getppid(), state["pid"]]
    held = _held_abstract_sockets(pids)
    with open(out, "w") as f:
        json.dump({"pids": pids, "held": {str(k): v for k, v in held.items()}}, f)


if __name__ == "__main__" and sys.argv[1:2] == ["--snapshot"]:
    _snapshot(sys.argv[2])
