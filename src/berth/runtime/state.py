"""A container's record under the runtime root: the state file, the exec fifo, and the lock.

Layout of ``<root>/<id>/``: ``state`` (a dict in marshal's format, written by temp file,
fsync and rename; it holds the bundle's config as given, for exec, update and the poststop
hooks; marshal is built into the interpreter, where reading JSON would load the ``_json``
extension, ~0.4 ms of every `start`, `kill` and `delete`; `berth-oci state` prints JSON) and ``exec.fifo`` (exists
from create until start: the init blocks opening it). The directory's creation with mkdir is
the id's reservation, so two racing creates cannot both win; while a create is under way the
directory has no state file yet and the container reads as "creating". Every verb that
changes a container holds ``flock`` on the directory.

A container's status is derived, as runc derives it, never trusted from the file alone:
the init's pid must be alive with the start time recorded at create (pids are reused).
"""

import errno
import fcntl
import marshal
import time

from berth.errors import AlreadyExists, Conflict, NotFound
from berth.spec.ident import validate_id
from berth.sys import fastos as os
from berth.sys.proc import stat as proc_stat

STATE = "state"
FIFO = "exec.fifo"
CONFIG = "config.json"

DEFAULT_ROOT = "/run/berth-oci"


def now_rfc3339():
    ns = time.time_ns()
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def write_atomic(path, data, mode=0o600, sync=True):
    """Replace ``path`` by a temp file and rename; ``sync`` fsyncs the data first."""
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


class Container:
    """One container's directory and recorded state."""

    def __init__(self, root, container_id, state=None):
        self.root = root
        self.id = container_id
        self.dir = os.path.join(root, container_id)
        self.state = state or {}
        self._lock_fd = None

    # ---- reservation and locking

    @classmethod
    def reserve(cls, root, container_id):
        """Claim ``container_id`` atomically; the caller fills and saves the state."""
        validate_id(container_id)
        os.makedirs(root, mode=0o711, exist_ok=True)
        c = cls(root, container_id)
        try:
            os.mkdir(c.dir, 0o711)
        except FileExistsError:
            raise AlreadyExists(f"container with id exists: {container_id}") from None
        c.lock()
        return c

    @classmethod
    def load(cls, root, container_id):
        validate_id(container_id)
        c = cls(root, container_id)
        c._read()
        return c

    @classmethod
    def locked(cls, root, container_id):
        """Load a container with its lock held (the state is read once, under the lock)."""
        validate_id(container_id)
        c = cls(root, container_id)
        c.lock()
        try:
            c._read()
        except BaseException:
            c.unlock()
            raise
        return c

    def _read(self):
        try:
            with open(os.path.join(self.dir, STATE), "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            if os.path.isdir(self.dir):
                self.state = {"id": self.id, "status": "creating", "pid": 0}
                return
            raise NotFound(f"container does not exist: {self.id}") from None
        try:
            self.state = marshal.loads(raw)
        except (EOFError, ValueError, TypeError):
            # A state file cut short (a crash of the host between write and rename on a
            # file system without ordering): the container is treated as stopped.
            self.state = {"id": self.id, "status": "stopped", "pid": 0}

    def lock(self):
        if self._lock_fd is None:
            try:
                fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except FileNotFoundError:
                raise NotFound(f"container does not exist: {self.id}") from None
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._lock_fd = fd
        return self

    def unlock(self):
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def reload(self):
        """Re-read state after taking the lock (another process may have changed it)."""
        self._read()
        return self

    # ---- files

    def path(self, name):
        return os.path.join(self.dir, name)

    def save(self, sync=False):
        """Write the state file: a temp file renamed over it, not fsynced. The rename keeps
        the record whole against a crash of any writer; only a crash of the host could
        lose an unsynced write, and that ends every process, cgroup and mount the record
        describes. What is left then reads as stopped (a missing or cut-short file too)
        and `delete` clears it. runc does not sync its state either; /run is a tmpfs on most
        hosts, but where it is a disk an fsync here waits for the journal: 0.2 to 4 ms of
        every `run` on this machine."""
        write_atomic(self.path(STATE), marshal.dumps(self.state), sync=sync)

    def config(self):
        """The container's config.json as created (kept inside the state file)."""
        if "config" in self.state:
            return self.state["config"]
        from berth.spec import jsonio

        return jsonio.load_file(self.path(CONFIG), f"{self.id}/{CONFIG}")

    # ---- derived status

    @property
    def pid(self):
        return self.state.get("pid", 0)

    def init_alive(self):
        pid = self.pid
        if pid <= 0:
            return False
        st = proc_stat(pid)
        if st is None or st[0] in ("Z", "X"):
            return False
        return st[1] == self.state.get("startTime", st[1])

    def status(self):
        recorded = self.state.get("status", "stopped")
        if recorded == "creating" and not self.pid:
            return "creating"
        if not self.init_alive():
            return "stopped"
        if recorded == "creating":
            return "creating"
        if self.state.get("paused"):
            return "paused"
        if os.path.exists(self.path(FIFO)):
            return "created"
        return "running"

    def oci_state(self):
        """The state object of the OCI spec, as `state` prints and hooks read on stdin."""
        status = self.status()
        out = {
            "ociVersion": self.state.get("ociVersion", ""),
            "id": self.id,
            "status": status,
            "pid": self.pid if status != "stopped" else 0,
            "bundle": self.state.get("bundle", ""),
            "rootfs": self.state.get("rootfs", ""),
            "created": self.state.get("created", ""),
            "owner": self.state.get("owner", ""),
        }
        if self.state.get("annotations"):
            out["annotations"] = self.state["annotations"]
        return out

    def cgroup(self):
        """The container's cgroup Manager (None for a record made before it had one)."""
        described = self.state.get("cgroup")
        if described:
            from berth.cgroups import manager_from
            return manager_from(described)
        if self.state.get("cgroupPath"):
            from berth.cgroups import manager_for
            return manager_for(self.state["cgroupPath"], self.id)
        return None

    def remove_dir(self):
        for name in os.listdir(self.dir):
            try:
                os.unlink(self.path(name))
            except FileNotFoundError:
                pass
        try:
            os.rmdir(self.dir)
        except FileNotFoundError:
            pass
        self.unlock()


def require_status(container, *allowed, verb):
    status = container.status()
    if status not in allowed:
        if status == "stopped" and verb in ("kill", "exec", "pause", "resume", "start"):
            raise Conflict(f"cannot {verb} container {container.id}: container is not running")
        raise Conflict(f"cannot {verb} container {container.id} in state {status}")
    return status


def list_ids(root):
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if os.path.isfile(os.path.join(root, n, STATE)))


def is_alive(pid):
    try:
        os.kill(pid, 0)
    except OSError as err:
        return err.errno == errno.EPERM
    return True
