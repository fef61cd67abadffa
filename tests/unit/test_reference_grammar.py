"""images/reference.py matches Docker's reference grammar by hand (no `re` at start-up): check
its matchers against the grammar's regular expressions (distribution's regexp.go, with Go's
ASCII \\w) on hand-picked edge cases and on many random strings built from the grammar's
alphabet."""

import random
import re

import pytest

from berth.images import reference as ref

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = _ALNUM + r"(?:" + _SEPARATOR + _ALNUM + r")*"
_REMOTE_NAME = _PATH_COMPONENT + r"(?:/" + _PATH_COMPONENT + r")*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = _DOMAIN_COMPONENT + r"(?:\." + _DOMAIN_COMPONENT + r")*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN = r"(?:" + _DOMAIN_NAME + "|" + _IPV6 + r")(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

REFERENCE_RE = re.compile(r"((?:" + _DOMAIN + r"/)?" + _REMOTE_NAME + r")(?::(" + _TAG
                          + r"))?(?:@(" + _DIGEST + r"))?")
NAME_RE = re.compile(r"(?:(" + _DOMAIN + r")/)?(" + _REMOTE_NAME + r")")
TAG_RE = re.compile(_TAG)
IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")

HEX32 = "0123456789abcdef" * 2
EDGES = [
    "", "a", "A", "a/b", "a//b", "/a", "a/", "a:b", "a:", ":a", "a@", "@a", "a:b@c",
    "a_b", "a__b", "a___b", "a-b", "a---b", "a.b", "a..b", "a._b", "a_-b", "-a", "a-",
    "_a", ".a", "a.", "localhost/a", "localhost:5000/a", "localhost:5000/a:tag",
    "localhost:5000", "localhost:/a", "localhost:50a/a", "[::1]/a", "[::1]:5000/a:t",
    "[]/a", "[::1/a", "[::g]/a", "[::1]x/a", "[::1]:/a", "Foo.Com/a", "-foo.com/a",
    "foo-.com/a", "foo..com/a", "foo.com./a", "a-b.c-d:1/x/y-z__w:v1.0-rc",
    "a:.tag", "a:-tag", "a:_tag", "a:" + "t" * 128, "a:" + "t" * 129, "A/b", "a/B",
    "a@sha256:" + HEX32, "a@sha256:" + HEX32[:-1], "a@sha256+b.c_d-e:" + HEX32,
    "a@sha256:" + HEX32.upper(), "a@1sha:" + HEX32, "a@sha--256:" + HEX32,
    "a@sha256:" + HEX32 + "@x", "a:t@sha256:" + HEX32, "a/b:t/c", "a:1/b:2",
    "docker.io/library/busybox:latest", "a/b/c/d/e", "a" * 64, "0" * 64, "é", "a/é",
    "a:é", "a\n", "a b", "a\t/b", "a:b:c", "a@b@c", "a@:" + HEX32, "a@x:" + HEX32 + "g",
]


def oracle(s):
    m = REFERENCE_RE.fullmatch(s)
    return m.groups() if m else None


def names(s):
    m = NAME_RE.fullmatch(s)
    return m.groups() if m else None


@pytest.mark.parametrize("s", EDGES)
def test_edges(s):
    assert ref._match_reference(s) == oracle(s)
    assert ref._split_name(s) == names(s)
    assert ref._is_tag(s) == bool(TAG_RE.fullmatch(s))
    assert ref._is_identifier(s) == bool(IDENTIFIER_RE.fullmatch(s))


def _random_string(rng):
    """Mostly well-formed references from the grammar's pieces, then a few random edits."""
    def pick(*options):
        return rng.choice(options)

    def word(chars, lo=1, hi=4):
        return "".join(rng.choice(chars) for _ in range(rng.randint(lo, hi)))

    def component():
        out = word("ab09")
        for _ in range(rng.randint(0, 2)):
            out += pick(".", "_", "__", "-", "--", "___", "._", "") + word("ab09", 0, 3)
        return out

    domain = pick("", "", word("aZ09-") + pick("", "." + word("aZ09-")),
                  "[" + word("0af:", 0, 5) + "]", "localhost") + \
        pick("", "", ":" + word("09a", 0, 5))
    name = "/".join(component() for _ in range(rng.randint(1, 3)))
    s = (domain + "/" if domain else "") + name
    if rng.random() < 0.4:
        s += ":" + word("aZ09_.-", 0, 6)
    if rng.random() < 0.3:
        s += "@" + pick("sha256", "a+b", "a-1", "1a", "a..b", "") + ":" + \
            word("0af9F:g", 30, 34)
    for _ in range(pick(0, 0, 1, 2)):
        i = rng.randint(0, len(s))
        s = s[:i] + pick("", rng.choice("aA0-_.:/@[]é ")) + s[i + rng.randint(0, 1):]
    return s


def test_random_strings_agree_with_the_grammar():
    rng = random.Random(4)
    for _ in range(30_000):
        s = _random_string(rng)
        assert ref._match_reference(s) == oracle(s), s
        assert ref._split_name(s) == names(s), s
