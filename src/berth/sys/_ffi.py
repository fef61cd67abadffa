"""The few pieces of ctypes that berth.sys.linux needs, built on the ``_ctypes`` extension.

``import ctypes`` costs about 2 ms here (its package defines dozens of types and loads
helpers berth never calls); ``_ctypes`` alone costs 0.4 ms. berth-oci pays imports on every
container operation, so the hot path binds libc through this module. It mirrors ctypes'
names (c_int, Structure, byref...) and its semantics; anything else uses ctypes proper.
"""

import _ctypes
from _ctypes import Structure, byref, get_errno, sizeof  # noqa: F401 - re-exported

_FUNCFLAG_CDECL = _ctypes.FUNCFLAG_CDECL
_FUNCFLAG_USE_ERRNO = _ctypes.FUNCFLAG_USE_ERRNO


class c_int(_ctypes._SimpleCData):
    _type_ = "i"


class c_uint(_ctypes._SimpleCData):
    _type_ = "I"


class c_long(_ctypes._SimpleCData):
    _type_ = "l"


class c_ulong(_ctypes._SimpleCData):
    _type_ = "L"


class c_uint64(_ctypes._SimpleCData):
    _type_ = "Q"


class c_char_p(_ctypes._SimpleCData):
    _type_ = "z"


c_uint32 = c_uint


class _Function(_ctypes.CFuncPtr):
    _flags_ = _FUNCFLAG_CDECL | _FUNCFLAG_USE_ERRNO
    _restype_ = c_int


class Library:
    """A shared object's functions as attributes, each returning a C int unless set."""

    def __init__(self, name=None):
        # The C code looks the symbol up through this attribute.
        self._handle = _ctypes.dlopen(name, 0)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        func = _Function((name, self))
        setattr(self, name, func)
        return func
