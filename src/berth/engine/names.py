"""Container ids and names: new ids, Docker's name rule, generated "adjective_surname" names."""

import os

from berth.errors import InvalidArgument

NAME_CHARS = "[a-zA-Z0-9][a-zA-Z0-9_.-]"

_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_NAME_REST = _ALNUM | frozenset("_.-")

_ADJECTIVES = (
    "agile", "amber", "ardent", "blithe", "brave", "breezy", "calm", "candid", "clever",
    "cosmic", "crisp", "daring", "deft", "eager", "earnest", "fervent", "gentle", "glad",
    "hardy", "humble", "jolly", "keen", "lively", "lucid", "mellow", "merry", "nimble",
    "noble", "patient", "plucky", "quiet", "rapid", "serene", "sharp", "steady", "sunny",
    "swift", "tidy", "vivid", "witty",
)

# People who shaped computing, mathematics and the sciences.
_SURNAMES = (
    "agnesi", "babbage", "bose", "cantor", "carson", "curie", "dijkstra", "euler",
    "faraday", "fermi", "franklin", "gauss", "germain", "goodall", "hamilton", "hopper",
    "hypatia", "johnson", "kepler", "knuth", "kovalevskaya", "lamarr", "liskov", "lovelace",
    "maxwell", "meitner", "mendel", "noether", "pascal", "raman", "ramanujan", "ritchie",
    "shannon", "somerville", "tesla", "thompson", "turing", "volta", "wu", "yonath",
)


def new_id():
    """A new container id: 64 lowercase hex characters from 32 random bytes.

    Like Docker, an id whose 12-character short form is all digits is drawn again, so a
    short id never reads as a number.
    """
    while True:
        cid = os.urandom(32).hex()
        if not cid[:12].isdigit():
            return cid


def is_id(value):
    """Whether ``value`` is a full container id (64 lowercase hex characters)."""
    return (isinstance(value, str) and len(value) == 64
            and all(c in "0123456789abcdef" for c in value))


def validate_name(name):
    """Check ``name`` against Docker's rule (a leading "/" allowed); return it without "/"."""
    bare = name[1:] if isinstance(name, str) and name.startswith("/") else name
    if (not isinstance(bare, str) or len(bare) < 2 or bare[0] not in _ALNUM
            or not all(c in _NAME_REST for c in bare[1:])):
        raise InvalidArgument(f"Invalid container name ({name}), only {NAME_CHARS} are allowed")
    return bare


def random_name(taken=frozenset()):
    """A generated "adjective_surname" name not in ``taken``; a number is added on collision."""
    base = f"{_pick(_ADJECTIVES)}_{_pick(_SURNAMES)}"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}{n}"
    return name


def _pick(words):
    # os.urandom instead of the random module: its import costs more than this whole module.
    return words[int.from_bytes(os.urandom(4), "little") % len(words)]
