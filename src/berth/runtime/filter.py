"""A seccomp filter as the kernel takes it: BPF bytes and flags, plain data that can cross
a pipe.

The runtime compiles the config's filter with libseccomp (``berth.runtime.seccomp``) beside
the init's rootfs work and hands the init this program; loading it is one seccomp(2) call,
so libseccomp's own work (a few ms for Docker's profile) stays off the init's path, and the
init never imports ctypes' full package or libseccomp.
"""

from berth.errors import PermissionDenied, from_oserror

# SECCOMP_FILTER_FLAG_* bits the kernel takes when a program is installed directly.
KERNEL_FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC": 1, "SECCOMP_FILTER_FLAG_LOG": 2,
                "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4}


class Program:
    __slots__ = ("bpf", "flags")

    def __init__(self, bpf, flags=0):
        self.bpf = bytes(bpf)
        self.flags = flags

    def to_text(self):
        return f"{self.flags} {self.bpf.hex()}"

    @classmethod
    def from_text(cls, text):
        flags, _, bpf = text.partition(" ")
        return cls(bytes.fromhex(bpf), int(flags))

    def load(self):
        """Install the program on the calling process (the container's init)."""
        from berth.sys import linux

        try:
            linux.seccomp_set_filter(self.bpf, self.flags)
        except OSError as err:
            if err.errno in (1, 13):  # EPERM, EACCES
                raise PermissionDenied(
                    "linux.seccomp: loading the filter needs CAP_SYS_ADMIN or no_new_privs"
                ) from err
            raise from_oserror(err, "linux.seccomp: loading the filter") from err
