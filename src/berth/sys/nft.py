"""libnftables (package libnftables1) through ctypes: run nft command text in process.

``run(text)`` hands one buffer to ``nft_run_cmd_from_buffer``: the whole buffer is one
netlink batch, so it applies completely or not at all. Output and errors are buffered by
the library and returned or raised (OSError naming the first error line); no policy here.
"""

_CTX = None
_LIB = None


def _load():
    global _LIB, _CTX
    if _CTX is None:
        import ctypes

        lib = ctypes.CDLL("libnftables.so.1", use_errno=True)
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = (ctypes.c_uint32,)
        for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
            getattr(lib, name).argtypes = (ctypes.c_void_p,)
        for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(lib, name).argtypes = (ctypes.c_void_p,)
            getattr(lib, name).restype = ctypes.c_char_p
        lib.nft_run_cmd_from_buffer.argtypes = (ctypes.c_void_p, ctypes.c_char_p)
        lib.nft_ctx_output_set_flags.argtypes = (ctypes.c_void_p, ctypes.c_uint)
        ctx = lib.nft_ctx_new(0)
        if not ctx:
            raise OSError(12, "nft_ctx_new failed")
        lib.nft_ctx_buffer_output(ctx)
        lib.nft_ctx_buffer_error(ctx)
        _LIB, _CTX = lib, ctx
    return _LIB, _CTX


NFT_CTX_OUTPUT_HANDLE = 1 << 3
NFT_CTX_OUTPUT_JSON = 1 << 4


def run(text, json_output=False):
    """Run nft commands; return what they printed. Raises OSError with nft's message."""
    lib, ctx = _load()
    lib.nft_ctx_output_set_flags(ctx, NFT_CTX_OUTPUT_JSON if json_output else 0)
    rc = lib.nft_run_cmd_from_buffer(ctx, text.encode())
    out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode(errors="replace")
    err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace")
    if rc != 0:
        lines = [line for line in err.splitlines() if line.strip()]
        first = next((line for line in lines if line.startswith("Error")), None)
        raise OSError(22, f"nft: {first or (lines[0] if lines else 'failed')}")
    return out
