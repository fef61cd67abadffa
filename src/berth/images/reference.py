"""Image references, parsed and normalised by Docker's rules (github.com/distribution/reference).

Grammar (reference.go)::

    reference         := name [ ":" tag ] [ "@" digest ]
    name              := [domain '/'] remote-name
    domain            := host [':' port-number]
    host              := domain-name | IPv4address | \\[ IPv6address \\]
    domain-component  := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
    path-component    := /[a-z0-9]+/ [separator /[a-z0-9]+/]*      separator := [_.]|__|[-]+
    tag               := /[\\w][\\w.-]{0,127}/
    digest            := /[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}/

Normalisation (normalize.go): a first component is a domain only when it holds "." or ":",
is "localhost", or has upper-case letters; otherwise the name is on docker.io, and a one-part
name there gets "library/". "index.docker.io" is docker.io. Errors use Docker's words, so
``berth pull Busybox`` says what ``docker pull Busybox`` says.
"""

from berth.errors import InvalidArgument
from berth.spec._record import Record
from berth.spec.image import check_digest

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

# The grammar above, matched by hand: `re` (with `enum`) costs ~4.5 ms to import and the
# patterns ~6 ms to compile, on every `berth run`. tests/unit/test_reference_grammar.py
# checks these functions against the grammar's regular expressions.
_DIGITS = frozenset("0123456789")
_LOWER_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz") | _DIGITS
_ALNUM = _LOWER_ALNUM | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DOMAIN_CHARS = _ALNUM | {"-"}
_TAG_CHARS = _ALNUM | {"_", ".", "-"}
_LETTERS = _ALNUM - _DIGITS
_HEX = frozenset("0123456789abcdefABCDEF")
_IPV6_CHARS = _HEX | {":"}
_LOWER_HEX = frozenset("0123456789abcdef")


def _is_path_component(s):
    """[a-z0-9]+ (?:(?:[._]|__|[-]+)[a-z0-9]+)*"""
    i, n = 0, len(s)
    while True:
        start = i
        while i < n and s[i] in _LOWER_ALNUM:
            i += 1
        if i == start:
            return False
        if i == n:
            return True
        c = s[i]
        if c == ".":
            i += 1
        elif c == "_":
            i += 2 if s.startswith("__", i) else 1
        elif c == "-":
            while i < n and s[i] == "-":
                i += 1
        else:
            return False


def _is_remote_name(s):
    return all(_is_path_component(part) for part in s.split("/"))


def _is_domain(s):
    """(?:domain-name | \\[ipv6\\])(?::[0-9]+)?"""
    if s.startswith("["):
        inside, sep, after = s[1:].partition("]")
        if not sep or not inside or not _IPV6_CHARS.issuperset(inside):
            return False
    else:
        host, sep, after = s.partition(":")
        after = sep + after
        for part in host.split("."):
            if not part or not _DOMAIN_CHARS.issuperset(part) or part[0] == "-" or \
                    part[-1] == "-":
                return False
    return not after or (after[0] == ":" and len(after) > 1 and _DIGITS.issuperset(after[1:]))


def _is_tag(s):
    return 0 < len(s) <= 128 and _TAG_CHARS.issuperset(s) and s[0] not in ".-"


def _is_digest(s):
    """[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"""
    alg, sep, hexpart = s.partition(":")
    if not sep or len(hexpart) < 32 or not _HEX.issuperset(hexpart):
        return False
    start = 0
    for i, c in enumerate(alg + "+"):
        if c in "-_+.":
            part = alg[start:i]
            if not part or part[0] not in _LETTERS or not _ALNUM.issuperset(part):
                return False
            start = i + 1
    return True


def _split_name(name):
    """(domain or None, remote name) of [domain '/'] remote-name, or None when it is not
    one: the first component is the domain whenever it can be one (as the regex's greedy
    optional group decides)."""
    first, sep, rest = name.partition("/")
    if sep and _is_domain(first) and _is_remote_name(rest):
        return first, rest
    return (None, name) if _is_remote_name(name) else None


def _match_reference(s):
    """(name, tag or None, digest or None) of reference := name [":" tag] ["@" digest], or
    None when ``s`` is not one."""
    rest, at, digest = s.partition("@")
    if at and not _is_digest(digest):
        return None
    colon, slash = rest.rfind(":"), rest.rfind("/")
    tag = None
    if colon > slash:  # a remote name holds no ":": this one starts the tag
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _is_tag(tag):
            return None
    if _split_name(rest) is None:
        return None
    return rest, tag, digest if at else None


def _is_identifier(s):
    return len(s) == 64 and _LOWER_HEX.issuperset(s)


FORMAT_ERROR = "invalid reference format"


class Reference(Record):
    """A normalised reference: ``domain`` "docker.io", ``path`` "library/busybox", and a tag,
    a digest, both, or (from ``parse(s, default_tag=None)``) neither."""

    domain: str = DEFAULT_DOMAIN
    path: str = ""
    tag: "str | None" = None
    digest: "str | None" = None

    @property
    def name(self):
        """The full repository name: "docker.io/library/busybox"."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar(self):
        """The name as ``docker images`` prints it: "busybox", "user/repo", "localhost:5000/x"."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        if self.path.startswith(OFFICIAL_REPO_PREFIX):
            rest = self.path[len(OFFICIAL_REPO_PREFIX):]
            # "library/a/b" keeps its prefix: only single-component official names shorten.
            if "/" not in rest:
                return rest
        return self.path

    def familiar_string(self):
        """The whole reference in familiar form: "busybox:latest", "busybox@sha256:..."."""
        return self.familiar + self._suffix()

    def __str__(self):
        return self.name + self._suffix()

    def _suffix(self):
        out = ""
        if self.tag is not None:
            out += ":" + self.tag
        if self.digest is not None:
            out += "@" + self.digest
        return out

    def with_tag(self, tag):
        """The same repository and digest with ``tag``; InvalidArgument for a bad tag."""
        if not isinstance(tag, str) or not _is_tag(tag):
            raise InvalidArgument(f"invalid tag format: {tag!r}")
        return self.replace(tag=tag)

    def with_digest(self, digest):
        """The same repository and tag with ``digest``; InvalidArgument for a bad digest."""
        check_digest(digest)
        return self.replace(digest=digest)

    def without_tag(self):
        return self.replace(tag=None)

    def without_digest(self):
        return self.replace(digest=None)

    def docker_ref(self):
        """Docker's ParseDockerRef: a reference with both a tag and a digest keeps only the
        digest (what a pull fetches)."""
        if self.tag is not None and self.digest is not None:
            return self.replace(tag=None)
        return self


def parse(s, default_tag=DEFAULT_TAG):
    """Parse and normalise a reference as ``docker pull`` does.

    "busybox" -> docker.io/library/busybox:latest. ``default_tag`` is added when the reference
    has neither tag nor digest; pass None to leave such a reference bare. InvalidArgument
    with Docker's words for anything malformed.
    """
    if not isinstance(s, str):
        raise InvalidArgument(FORMAT_ERROR)
    if _is_identifier(s):
        raise InvalidArgument(
            f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings")
    domain, remainder = _split_docker_domain(s)
    remote = remainder.partition(":")[0]
    if remote.lower() != remote:
        raise InvalidArgument(f"{FORMAT_ERROR}: repository name ({remote}) must be lowercase")
    ref = parse_normalized(domain + "/" + remainder)
    if ref.tag is None and ref.digest is None and default_tag is not None:
        ref = ref.with_tag(default_tag)
    return ref


def parse_normalized(s):
    """Parse a reference that already names its domain (distribution's ``Parse``), as stored
    in the metadata database; no defaults are applied."""
    if not s:
        raise InvalidArgument("repository name must have at least one component")
    m = _match_reference(s)
    if m is None:
        low = s.lower()
        if low != s and _match_reference(low):
            raise InvalidArgument("repository name must be lowercase")
        raise InvalidArgument(FORMAT_ERROR)
    name, tag, digest = m
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidArgument(
            f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters")
    if digest is not None:
        check_digest(digest)
    domain, path = _split_name(name)
    if domain is None:
        # Only parse() gives names without a domain a home; here that is a malformed entry.
        raise InvalidArgument(f"{FORMAT_ERROR}: {s!r} names no registry")
    return Reference(domain=domain, path=path, tag=tag, digest=digest)


def is_identifier(s):
    """True for a bare 64-hex image id, which Docker refuses as a repository name."""
    return isinstance(s, str) and _is_identifier(s)


def _split_docker_domain(name):
    first, sep, rest = name.partition("/")
    if not sep:
        # One component ("ubuntu", "ubuntu:22.04", even "localhost:5000") is a Hub name.
        return DEFAULT_DOMAIN, OFFICIAL_REPO_PREFIX + name
    if first == "localhost":
        domain, remainder = first, rest
    elif first == LEGACY_DEFAULT_DOMAIN:
        domain, remainder = DEFAULT_DOMAIN, rest
    elif "." in first or ":" in first or first.lower() != first:
        domain, remainder = first, rest
    else:
        domain, remainder = DEFAULT_DOMAIN, name
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def split_host_port(domain):
    """("host", "port" or "") of a reference's domain; IPv6 loses its brackets."""
    if domain.startswith("["):
        host, _, after = domain[1:].partition("]")
        return host, after[1:] if after.startswith(":") else ""
    if domain.count(":") == 1:
        host, _, port = domain.partition(":")
        return host, port
    return domain, ""


def is_insecure_default(domain):
    """True for registries reached over plain http without being told: localhost,
    127.0.0.0/8 and ::1, with or without a port (Docker's default insecure range)."""
    host, _ = split_host_port(domain)
    if host.lower() == "localhost":
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
