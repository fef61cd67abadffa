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

import ipaddress
import re

from berth.errors import InvalidArgument
from berth.spec._record import Record
from berth.spec.image import check_digest

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = _ALNUM + r"(?:" + _SEPARATOR + _ALNUM + r")*"
_REMOTE_NAME = _PATH_COMPONENT + r"(?:/" + _PATH_COMPONENT + r")*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = _DOMAIN_COMPONENT + r"(?:\." + _DOMAIN_COMPONENT + r")*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN = r"(?:" + _DOMAIN_NAME + "|" + _IPV6 + r")(?::[0-9]+)?"
# Python's \w is Unicode-aware; Go's is ASCII: pin it.
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_REFERENCE_RE = re.compile(
    r"((?:" + _DOMAIN + r"/)?" + _REMOTE_NAME + r")(?::(" + _TAG + r"))?(?:@(" + _DIGEST + r"))?")
_NAME_RE = re.compile(r"(?:(" + _DOMAIN + r")/)?(" + _REMOTE_NAME + r")")
_TAG_RE = re.compile(_TAG)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")

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
        if not isinstance(tag, str) or not _TAG_RE.fullmatch(tag):
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
    if _IDENTIFIER_RE.fullmatch(s):
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
    m = _REFERENCE_RE.fullmatch(s)
    if m is None:
        low = s.lower()
        if low != s and _REFERENCE_RE.fullmatch(low):
            raise InvalidArgument("repository name must be lowercase")
        raise InvalidArgument(FORMAT_ERROR)
    name, tag, digest = m.groups()
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidArgument(
            f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters")
    if digest is not None:
        check_digest(digest)
    domain, path = _NAME_RE.fullmatch(name).groups()
    if domain is None:
        # Only parse() gives names without a domain a home; here that is a malformed entry.
        raise InvalidArgument(f"{FORMAT_ERROR}: {s!r} names no registry")
    return Reference(domain=domain, path=path, tag=tag, digest=digest)


def is_identifier(s):
    """True for a bare 64-hex image id, which Docker refuses as a repository name."""
    return isinstance(s, str) and _IDENTIFIER_RE.fullmatch(s) is not None


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
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
