"""bpf(2): load an eBPF program and attach it to a cgroup. Used for cgroup v2 device rules.

Like the rest of berth.sys this only wraps the system call: the program's instructions come
from the caller (berth.cgroups.devices builds them). Errors are OSError naming the operation;
a verifier refusal carries the verifier's log.
"""

import ctypes
from berth.sys import fastos as os
import struct

from berth.sys import linux

_NR_BPF = 280 if os.uname().machine == "aarch64" else 321

BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_OVERRIDE = 1
BPF_F_ALLOW_MULTI = 2

_ATTR_SIZE = 128  # a prefix of union bpf_attr; the kernel reads the rest as zeros


def _bpf(cmd, attr, what):
    buf = ctypes.create_string_buffer(bytes(attr), len(attr))
    return linux._retry(lambda: linux.LIBC.syscall(_NR_BPF, cmd, buf, len(attr)), what)


def prog_load(prog_type, insns, license="Apache-2.0", log_size=0):
    """BPF_PROG_LOAD of ``insns`` (bytes, 8 per instruction); returns the program's fd."""
    code = ctypes.create_string_buffer(bytes(insns), len(insns))
    lic = ctypes.create_string_buffer(license.encode())
    log = ctypes.create_string_buffer(log_size) if log_size else None
    attr = bytearray(_ATTR_SIZE)
    struct.pack_into("=IIQQIIQ", attr, 0, prog_type, len(insns) // 8,
                     ctypes.addressof(code), ctypes.addressof(lic),
                     1 if log else 0, log_size, ctypes.addressof(log) if log else 0)
    try:
        return _bpf(BPF_PROG_LOAD, attr, "bpf prog load")
    except OSError as err:
        if log is None or not log.value:
            raise
        # The verifier's reason is its first line; the last is only a summary.
        reason = log.value.decode(errors="replace").strip().splitlines()[0]
        raise OSError(err.errno, f"{err.strerror}: {reason}") from err


def prog_attach(target_fd, prog_fd, attach_type, flags=0):
    attr = bytearray(_ATTR_SIZE)
    struct.pack_into("=IIII", attr, 0, target_fd, prog_fd, attach_type, flags)
    _bpf(BPF_PROG_ATTACH, attr, "bpf prog attach")


def attach_device_program(cgroup_dir, insns):
    """Load a BPF_PROG_TYPE_CGROUP_DEVICE program and attach it to ``cgroup_dir``.

    Attached with BPF_F_ALLOW_OVERRIDE: attaching again replaces this cgroup's program (an
    update), and a nested runtime may attach its own below.
    """
    try:
        prog = prog_load(BPF_PROG_TYPE_CGROUP_DEVICE, insns)
    except OSError as err:
        if err.errno not in (22, 13):  # EINVAL, EACCES: ask the verifier why
            raise
        prog = prog_load(BPF_PROG_TYPE_CGROUP_DEVICE, insns, log_size=1 << 16)
    try:
        dirfd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            prog_attach(dirfd, prog, BPF_CGROUP_DEVICE, BPF_F_ALLOW_OVERRIDE)
        finally:
            os.close(dirfd)
    finally:
        os.close(prog)  # the attachment keeps the program alive
