"""Content digests ("sha256:<hex>", "sha512:<hex>") as the OCI image spec defines them.

Parsing is strict (lower-case hex of the algorithm's exact length) because a digest names a
file under blobs/: a lax parser would let "sha256:../x" escape the store.
"""

from berth.errors import InvalidArgument

ALGORITHMS = ("sha256", "sha512")
_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_HEX = frozenset("0123456789abcdef")


class DigestMismatch(InvalidArgument):
    """Content whose hash is not the digest it was supposed to have.

    ``DigestMismatch(what, expected, got)`` builds the message
    "digest mismatch for <what>: expected <expected>, got <got>"; a single argument is taken
    as the whole message.
    """

    def __init__(self, what, expected=None, got=None, *, cleanup_errors=()):
        if expected is None and got is None:
            message = what
        else:
            message = f"digest mismatch for {what}: expected {expected}, got {got}"
        super().__init__(message, cleanup_errors=cleanup_errors)
        self.expected = expected
        self.got = got


def parse_digest(s):
    """Split "alg:hex" into ("alg", "hex"); InvalidArgument for anything malformed."""
    if not isinstance(s, str):
        raise InvalidArgument(f"invalid checksum digest format: {s!r}")
    alg, sep, hexpart = s.partition(":")
    if not sep or not alg or not hexpart:
        raise InvalidArgument(f"invalid checksum digest format: {s!r}")
    if alg not in _HEX_LENGTH:
        raise InvalidArgument(f"unsupported digest algorithm: {alg!r} in {s!r}")
    if len(hexpart) != _HEX_LENGTH[alg]:
        raise InvalidArgument(f"invalid checksum digest length: {s!r}")
    if not _HEX.issuperset(hexpart):
        raise InvalidArgument(f"invalid checksum digest format: {s!r} (want lower-case hex)")
    return alg, hexpart


# Below this size the interpreter's built-in sha256/sha512 hash as fast as any: `berth run`
# hashes only its image's manifest and config, and loading hashlib (OpenSSL) costs ~3 ms.
_SMALL = 1 << 20


def _small_hasher(alg):
    try:
        if alg == "sha256":
            from _sha256 import sha256 as new
        elif alg == "sha512":
            from _sha512 import sha512 as new
        else:
            return hasher(alg)
    except ImportError:  # a Python without them (3.12 calls it _sha2)
        return hasher(alg)
    return new()


def hasher(digest_or_alg):
    """A fresh hashlib object for the algorithm of "sha256:..." or of the name "sha256"."""
    import hashlib  # OpenSSL's (~3 ms to load): for streams and big blobs

    if isinstance(digest_or_alg, str) and ":" in digest_or_alg:
        alg = parse_digest(digest_or_alg)[0]
    elif digest_or_alg in _HEX_LENGTH:
        alg = digest_or_alg
    else:
        raise InvalidArgument(f"unsupported digest algorithm: {digest_or_alg!r}")
    return hashlib.new(alg)


def digest_bytes(data, alg="sha256"):
    """The digest "alg:<hex>" of ``data``."""
    h = _small_hasher(alg) if len(data) < _SMALL else hasher(alg)
    h.update(data)
    return f"{alg}:{h.hexdigest()}"
