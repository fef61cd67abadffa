"""berth.cgroups: a container's control groups, on cgroup v1 or v2 hosts.

This package knows nothing of the runtime. ``manager_for`` looks at the cgroup mount
(``root``, normally /sys/fs/cgroup) and returns a ``Manager`` for one container:

* unified host (``root/cgroup.controllers`` exists): ``berth.cgroups.v2.V2Manager``;
* otherwise v1 or hybrid: ``berth.cgroups.v1.V1Manager``, one directory in each controller
  hierarchy mounted under ``root`` (a cgroup2 at ``root/unified`` and the name=systemd
  hierarchy are left alone).

cgroupsPath follows runc: empty means "/berth-oci/<container id>"; an absolute path is
relative to each hierarchy's root; a relative one is relative to the calling process's own
cgroup, as /proc/self/cgroup gives it (per controller on v1). The root cgroup itself is
refused. The systemd driver ("slice:prefix:name") is not implemented: it raises Unsupported.

The Manager protocol (every argument and result is plain data):

    path                      the resolved cgroup path inside the hierarchy ("/berth-oci/x")
    version                   1 or 2
    create()                  make the directories (v1: copy cpuset.cpus/mems from the parent;
                              v2: enable the parents' available controllers)
    apply(pid)                move ``pid`` (a whole process) into the cgroup
    set(resources)            write the limits of a berth.spec.runtime.Resources (or None)
    freeze() / thaw()         stop or resume every task; return once the kernel has settled
    frozen() -> bool
    pids() -> list[int]       every process in the cgroup and its sub-cgroups
    kill_all(sig)             signal every process (cgroup.kill for SIGKILL where present)
    stats() -> dict           shaped like runc's ``events --stats`` "data" object
    oom_kill_count() -> int   how many processes the OOM killer took so far
    destroy()                 remove the directories, deepest first; nothing is left behind
    exists() -> bool
    container_mounts() -> list[(host dir, destination under /sys/fs/cgroup)]
                              what the runtime should bind-mount inside the container

Errors: a limit the kernel refuses is InvalidArgument naming the field, value and file; a
controller or file the host lacks is Unsupported; a failing mkdir/rmdir/attach is
SystemFailure. Only os, errno and time are imported.
"""

from berth.sys import fastos as os

from berth.errors import InvalidArgument, Unsupported

DEFAULT_PARENT = "/berth-oci"


class Manager:
    """The interface every cgroup driver implements; see the module docstring."""

    version = 0
    path = ""

    def create(self):
        raise NotImplementedError

    def apply(self, pid):
        raise NotImplementedError

    def set(self, resources):
        raise NotImplementedError

    def freeze(self):
        raise NotImplementedError

    def thaw(self):
        raise NotImplementedError

    def frozen(self):
        raise NotImplementedError

    def pids(self):
        raise NotImplementedError

    def kill_all(self, sig):
        raise NotImplementedError

    def stats(self):
        raise NotImplementedError

    def oom_kill_count(self):
        raise NotImplementedError

    def destroy(self):
        raise NotImplementedError

    def exists(self):
        raise NotImplementedError

    def container_mounts(self):
        raise NotImplementedError


def manager_for(cgroups_path, container_id, *, root="/sys/fs/cgroup", systemd=False,
                self_cgroup="/proc/self/cgroup"):
    """The Manager for a container's cgroup; ``self_cgroup`` is read for relative paths."""
    if systemd:
        if not os.path.isdir("/run/systemd/system"):
            raise Unsupported("systemd cgroup driver: systemd is not running on this host")
        raise Unsupported("systemd cgroup driver: not supported yet; use the cgroupfs driver")
    if os.path.exists(os.path.join(root, "cgroup.controllers")):
        from berth.cgroups.v2 import V2Manager
        own = own_cgroups(self_cgroup).get("", "/") if _is_relative(cgroups_path) else "/"
        return V2Manager(resolve_path(cgroups_path, container_id, own), root)
    from berth.cgroups.v1 import V1Manager
    return V1Manager.for_path(cgroups_path, container_id, root, self_cgroup)


def manager_from(described):
    """Rebuild a Manager from what its ``describe()`` returned (kept in a container's state),
    without looking at the hierarchies or this process's own cgroups again."""
    if described.get("version") == 2:
        from berth.cgroups.v2 import V2Manager
        return V2Manager(described["path"], described.get("root", "/sys/fs/cgroup"))
    from berth.cgroups.v1 import V1Manager
    return V1Manager(described["dirs"], described["path"],
                     described.get("root", "/sys/fs/cgroup"))


def _is_relative(cgroups_path):
    return bool(cgroups_path) and not cgroups_path.startswith("/")


def resolve_path(cgroups_path, container_id, own="/"):
    """cgroupsPath as an absolute path inside a hierarchy whose own-cgroup is ``own``."""
    if not cgroups_path:
        path = f"{DEFAULT_PARENT}/{container_id}"
    elif cgroups_path.startswith("/"):
        path = cgroups_path
    else:
        path = os.path.join(own or "/", cgroups_path)
    path = os.path.normpath(path)
    if path.startswith("//"):
        path = path[1:]
    if path == "/":
        raise InvalidArgument(f"linux.cgroupsPath: {cgroups_path!r} names the root cgroup")
    return path


def own_cgroups(self_cgroup="/proc/self/cgroup"):
    """/proc/self/cgroup as {controller: path}; the v2 entry ("0::") is under key ""."""
    out = {}
    try:
        with open(self_cgroup, "rb") as f:
            text = f.read().decode()
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _id, controllers, path = parts
        if not controllers:
            out[""] = path
            continue
        for name in controllers.split(","):
            out[name] = path
    return out
