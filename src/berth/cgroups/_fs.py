"""File access shared by the cgroup drivers: writing control files, reading them, walking trees.

A control file is written the way the kernel wants it: open O_WRONLY|O_TRUNC, one write,
close. An OSError becomes a berth error naming the resource field, the value and the file,
so a refused limit reads "linux.resources.memory.limit: cannot write 10 to
memory.limit_in_bytes: Device or resource busy". Tests may wrap ``write`` to record calls.
"""

import errno
from berth.sys import fastos as os
import time

from berth.errors import InvalidArgument, PermissionDenied, SystemFailure, Unsupported

_WRITE_FLAGS = os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC


def write(directory, name, value, field):
    """Write ``value`` to ``directory/name``; ``field`` is the config field it comes from."""
    path = os.path.join(directory, name)
    data = str(value).encode()
    try:
        fd = os.open(path, _WRITE_FLAGS)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as err:
        raise _write_error(err, field, value, name) from err


def _write_error(err, field, value, name):
    if err.errno == errno.ENOENT:
        return Unsupported(f"{field}: {name} does not exist on this host")
    text = f"{field}: cannot write {value} to {name}: {os.strerror(err.errno)}"
    if err.errno in (errno.EPERM, errno.EACCES):
        return PermissionDenied(text)
    return InvalidArgument(text)


def read(directory, name, default=None):
    """The text of ``directory/name`` stripped, or ``default`` when the file is not there."""
    try:
        with open(os.path.join(directory, name), "rb") as f:
            return f.read().decode().strip()
    except (FileNotFoundError, NotADirectoryError):
        return default
    except OSError as err:
        if err.errno in (errno.ENODEV, errno.EOPNOTSUPP, errno.EINVAL):
            return default
        raise


def read_int(directory, name, default=None, unlimited=2**64 - 1):
    """An integer file; "max" (cgroup v2's no-limit) reads as ``unlimited``."""
    text = read(directory, name)
    if text is None or text == "":
        return default
    if text == "max":
        return unlimited
    try:
        return int(text)
    except ValueError:
        return default


def read_keyed(directory, name):
    """A flat keyed file ("key value" per line, as memory.stat) as a dict of ints."""
    out = {}
    text = read(directory, name)
    if not text:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1]) if parts[1] != "max" else 2**64 - 1
            except ValueError:
                pass
    return out


def exists(directory, name):
    return os.path.exists(os.path.join(directory, name))


def procs_in(directory):
    """Every pid in cgroup ``directory`` and its descendants, in walk order, no duplicates."""
    seen = set()
    out = []
    for dirpath, _dirs, _files in os.walk(directory):
        text = read(dirpath, "cgroup.procs", "")
        for word in text.split():
            pid = int(word)
            if pid not in seen:
                seen.add(pid)
                out.append(pid)
    return out


def add_proc(directory, pid):
    path = os.path.join(directory, "cgroup.procs")
    try:
        fd = os.open(path, _WRITE_FLAGS)
        try:
            os.write(fd, str(pid).encode())
        finally:
            os.close(fd)
    except OSError as err:
        raise SystemFailure(f"cgroup: cannot add pid {pid} to {path}: "
                            f"{os.strerror(err.errno)}", errno=err.errno) from err


def remove_tree(directory, attempts=50):
    """rmdir ``directory`` and its sub-cgroups, deepest first; EBUSY is retried briefly.

    A cgroup stays busy for a moment after its last process exits (the kernel reaps it
    asynchronously), hence the retries; a missing directory is already done.
    """
    if not os.path.isdir(directory):
        return
    dirs = [dirpath for dirpath, _d, _f in os.walk(directory, topdown=False)]
    for path in dirs:
        delay = 0.001
        for attempt in range(attempts):
            try:
                os.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError as err:
                if err.errno != errno.EBUSY or attempt == attempts - 1:
                    raise SystemFailure(f"cgroup: cannot remove {path}: "
                                        f"{os.strerror(err.errno)}", errno=err.errno) from err
                time.sleep(delay)
                delay = min(delay * 2, 0.1)


def wait_until(check, timeout=10.0):
    """Poll ``check()`` with growing sleeps until it returns true or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def make_dirs(path):
    """mkdir -p; returns the directories this call created, outermost first."""
    made = []
    missing = []
    probe = path
    while not os.path.isdir(probe):
        missing.append(probe)
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o755)
            made.append(d)
        except FileExistsError:
            pass
        except OSError as err:
            raise SystemFailure(f"cgroup: cannot create {d}: {os.strerror(err.errno)}",
                                errno=err.errno) from err
    return made


def signal_all(manager, sig):
    """Signal every process of ``manager``'s cgroup, frozen meanwhile so none can fork away.

    A cgroup that was already frozen (a paused container) stays frozen, except for SIGKILL,
    which needs the tasks running to take effect.
    """
    from berth.errors import BerthError, from_oserror

    can_freeze = manager.can_freeze()
    was_frozen = can_freeze and manager.frozen()
    if can_freeze and not was_frozen:
        try:
            manager.freeze()
        except BerthError:
            can_freeze = False
    try:
        for pid in manager.pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
            except OSError as err:
                raise from_oserror(err, f"cgroup: cannot signal pid {pid}") from err
    finally:
        if can_freeze and (not was_frozen or sig == 9):
            manager.thaw()


def set_pids_hugetlb_rdma(need, resources, hugetlb_limit):
    """The limits both versions write alike; ``need(controller, field)`` gives the directory.

    Only hugetlb's file name differs: hugetlb.<size>.``hugetlb_limit`` (and its .rsvd. twin
    where the kernel has reservation accounting).
    """
    r = "linux.resources"
    if resources.pids is not None:
        d = need("pids", f"{r}.pids.limit")
        limit = resources.pids.limit
        write(d, "pids.max", limit if limit > 0 else "max", f"{r}.pids.limit")
    for i, h in enumerate(resources.hugepage_limits):
        field = f"{r}.hugepageLimits[{i}]"
        d = need("hugetlb", field)
        write(d, f"hugetlb.{h.page_size}.{hugetlb_limit}", h.limit, field)
        rsvd = f"hugetlb.{h.page_size}.rsvd.{hugetlb_limit}"
        if exists(d, rsvd):
            write(d, rsvd, h.limit, field)
    if resources.rdma:
        d = need("rdma", f"{r}.rdma")
        for line in rdma_lines(resources.rdma):
            write(d, "rdma.max", line, f"{r}.rdma")


def rdma_lines(rdma):
    """linux.resources.rdma ({device: {hcaHandles, hcaObjects}}) as rdma.max lines."""
    lines = []
    for device, limits in (rdma or {}).items():
        parts = [device]
        if not isinstance(limits, dict):
            raise InvalidArgument(f"linux.resources.rdma.{device}: must be an object")
        if limits.get("hcaHandles") is not None:
            parts.append(f"hca_handle={int(limits['hcaHandles'])}")
        if limits.get("hcaObjects") is not None:
            parts.append(f"hca_object={int(limits['hcaObjects'])}")
        if len(parts) > 1:
            lines.append(" ".join(parts))
    return lines


def destroy_all(directories):
    """remove_tree on each directory; the first failure is raised with the others beside it."""
    errors = []
    for d in directories:
        try:
            remove_tree(d)
        except SystemFailure as err:
            errors.append(err)
    if errors:
        first = errors[0]
        first.cleanup_errors.extend(errors[1:])
        raise first
