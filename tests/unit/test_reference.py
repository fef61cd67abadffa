"""Image references against Docker's rules; many rows are facts from distribution/reference's
own test tables (normalize_test.go, reference_test.go), restated as data."""

import pytest

from berth.errors import InvalidArgument
from berth.images.reference import (
    Reference, is_identifier, is_insecure_default, parse, parse_normalized, split_host_port,
)

D64 = "sha256:" + "f" * 64
D2 = "sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c"

# input -> (str(ref), familiar name, familiar_string(), domain, path, tag, digest)
VALID = [
    ("busybox", "docker.io/library/busybox:latest", "busybox", "busybox:latest",
     "docker.io", "library/busybox", "latest", None),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox", "busybox:1.36",
     "docker.io", "library/busybox", "1.36", None),
    ("user/repo", "docker.io/user/repo:latest", "user/repo", "user/repo:latest",
     "docker.io", "user/repo", "latest", None),
    ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox", "busybox:latest",
     "docker.io", "library/busybox", "latest", None),
    ("docker.io/library/busybox:latest", "docker.io/library/busybox:latest", "busybox",
     "busybox:latest", "docker.io", "library/busybox", "latest", None),
    ("index.docker.io/busybox", "docker.io/library/busybox:latest", "busybox",
     "busybox:latest", "docker.io", "library/busybox", "latest", None),
    ("index.docker.io/user/repo:v1", "docker.io/user/repo:v1", "user/repo", "user/repo:v1",
     "docker.io", "user/repo", "v1", None),
    ("library/foo/bar", "docker.io/library/foo/bar:latest", "library/foo/bar",
     "library/foo/bar:latest", "docker.io", "library/foo/bar", "latest", None),
    ("localhost/foo", "localhost/foo:latest", "localhost/foo", "localhost/foo:latest",
     "localhost", "foo", "latest", None),
    ("localhost:5000/a/b:tag", "localhost:5000/a/b:tag", "localhost:5000/a/b",
     "localhost:5000/a/b:tag", "localhost:5000", "a/b", "tag", None),
    ("127.0.0.1:5000/x", "127.0.0.1:5000/x:latest", "127.0.0.1:5000/x",
     "127.0.0.1:5000/x:latest", "127.0.0.1:5000", "x", "latest", None),
    ("[::1]:5000/x", "[::1]:5000/x:latest", "[::1]:5000/x", "[::1]:5000/x:latest",
     "[::1]:5000", "x", "latest", None),
    ("[2001:db8::1]/repo:tag", "[2001:db8::1]/repo:tag", "[2001:db8::1]/repo",
     "[2001:db8::1]/repo:tag", "[2001:db8::1]", "repo", "tag", None),
    ("ghcr.io/owner/img:v1.2.3", "ghcr.io/owner/img:v1.2.3", "ghcr.io/owner/img",
     "ghcr.io/owner/img:v1.2.3", "ghcr.io", "owner/img", "v1.2.3", None),
    ("busybox@" + D64, "docker.io/library/busybox@" + D64, "busybox", "busybox@" + D64,
     "docker.io", "library/busybox", None, D64),
    ("busybox:1@" + D64, "docker.io/library/busybox:1@" + D64, "busybox",
     "busybox:1@" + D64, "docker.io", "library/busybox", "1", D64),
    ("example.com:8000/a/b@" + D64, "example.com:8000/a/b@" + D64, "example.com:8000/a/b",
     "example.com:8000/a/b@" + D64, "example.com:8000", "a/b", None, D64),
    # One component is always a Hub name, even when it looks like a host and port.
    ("localhost:5000", "docker.io/library/localhost:5000", "localhost", "localhost:5000",
     "docker.io", "library/localhost", "5000", None),
    ("192.168.0.1:80", "docker.io/library/192.168.0.1:80", "192.168.0.1", "192.168.0.1:80",
     "docker.io", "library/192.168.0.1", "80", None),
    # An upper-case first component is taken for a domain (Docker's FIXME, kept).
    ("Foo/bar", "Foo/bar:latest", "Foo/bar", "Foo/bar:latest", "Foo", "bar", "latest", None),
    ("lowercase:Uppercase", "docker.io/library/lowercase:Uppercase", "lowercase",
     "lowercase:Uppercase", "docker.io", "library/lowercase", "Uppercase", None),
    ("a__b/c--d/e.f_g:_t", "docker.io/a__b/c--d/e.f_g:_t", "a__b/c--d/e.f_g",
     "a__b/c--d/e.f_g:_t", "docker.io", "a__b/c--d/e.f_g", "_t", None),
    ("busybox:" + "t" * 128, "docker.io/library/busybox:" + "t" * 128, "busybox",
     "busybox:" + "t" * 128, "docker.io", "library/busybox", "t" * 128, None),
]


@pytest.mark.parametrize("text,full,familiar,familiar_string,domain,path,tag,digest", VALID,
                         ids=[row[0][:40] for row in VALID])
def test_parse(text, full, familiar, familiar_string, domain, path, tag, digest):
    ref = parse(text)
    assert str(ref) == full
    assert ref.familiar == familiar
    assert ref.familiar_string() == familiar_string
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (domain, path, tag, digest)
    assert ref.name == f"{domain}/{path}"
    # The full form parses back to the same reference, and so does the familiar one.
    assert parse(full) == ref
    assert parse(familiar_string) == ref
    assert parse_normalized(full) == ref


LOWER = "invalid reference format: repository name ({}) must be lowercase"
INVALID = [
    ("Busybox", LOWER.format("library/Busybox")),
    ("docker/Docker", LOWER.format("docker/Docker")),
    ("docker.io/docker/Docker", LOWER.format("docker/Docker")),
    ("Uppercase:tag", LOWER.format("library/Uppercase")),
    ("test:5000/Uppercase/lowercase:tag", LOWER.format("Uppercase/lowercase")),
    ("busybox:bad!tag", "invalid reference format"),
    ("busybox:-tag", "invalid reference format"),
    ("busybox:" + "t" * 129, "invalid reference format"),
    ("busybox:", "invalid reference format"),
    (":justtag", "invalid reference format"),
    ("@" + D64, "invalid reference format"),
    ("", "invalid reference format"),
    ("https://github.com/docker/docker", "invalid reference format"),
    ("-docker", "invalid reference format"),
    ("-docker/docker", "invalid reference format"),
    ("docker-/docker", "invalid reference format"),
    ("-docker.io/docker/docker", "invalid reference format"),
    ("docker///docker", "invalid reference format"),
    ("docker.io/docker///docker", "invalid reference format"),
    ("____/____", "invalid reference format"),
    ("_docker/_docker", "invalid reference format"),
    ("dock..er/docker", "invalid reference format"),
    ("dock_.er/docker", "invalid reference format"),
    ("dock-.er/docker", "invalid reference format"),
    ("docker/", "invalid reference format"),
    ("aa/asdf$$^/aa", "invalid reference format"),
    ("[fc00::1]", "invalid reference format"),
    ("[fc00::1]:5000", "invalid reference format"),
    ("fc00::1:5000/debian", "invalid reference format"),
    ("[fe80::1%eth0]:5000/debian", "invalid reference format"),
    ("[2001:db8:3:4::192.0.2.33]:5000/debian", "invalid reference format"),
    ("busybox@sha256:abc", "invalid reference format"),
    ("busybox@sha256:" + "f" * 34, "invalid checksum digest length"),
    ("busybox@sha256:" + "f" * 65, "invalid checksum digest length"),
    ("busybox@sha256:" + "F" * 64, "invalid checksum digest format"),
    # Docker checks case on everything up to the first ":", digest included.
    ("busybox@SHA256:" + "f" * 64, LOWER.format("library/busybox@SHA256")),
    ("validname@invaliddigest:" + "f" * 64, "unsupported digest algorithm"),
    ("busybox@md5:" + "f" * 32, "unsupported digest algorithm"),
    ("1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
     "invalid repository name (1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a)"
     ", cannot specify 64-byte hexadecimal strings"),
    ("_".join(["this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255"] * 4)
     + "/docker",
     "repository name must not be more than 255 characters"),
    ("a/" * 127 + "a", "repository name must not be more than 255 characters"),
]


@pytest.mark.parametrize("text,message", INVALID, ids=[row[0][:40] for row in INVALID])
def test_parse_errors(text, message):
    with pytest.raises(InvalidArgument) as info:
        parse(text)
    assert str(info.value) == message


# Docker's TestValidateReferenceName / TestValidateRemoteName: names it accepts.
DOCKER_VALID_NAMES = [
    "docker/docker", "library/debian", "debian", "docker.io/docker/docker",
    "docker.io/library/debian", "docker.io/debian", "index.docker.io/docker/docker",
    "index.docker.io/library/debian", "index.docker.io/debian", "127.0.0.1:5000/docker/docker",
    "127.0.0.1:5000/library/debian", "127.0.0.1:5000/debian", "192.168.0.1", "192.168.0.1:80",
    "192.168.0.1:8/debian", "192.168.0.2:25000/debian",
    "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
    "[fc00::1]:5000/docker", "[fc00::1]:5000/docker/docker",
    "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
    "docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
    "Docker/docker", "DOCKER/docker", "docker-rules/docker", "docker---rules/docker",
    "doc/docker", "d/docker", "jess/t", "dock__er/docker",
    "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
    "b.gcr.io/test.example.com/my-app:test.example.com",
    "xn--n3h.com/myimage:xn--n3h.com",
    "xn--7o8h.com/myimage:xn--7o8h.com@sha512:" + "f" * 128,
    "foo_bar.com:8080", "foo/foo_bar.com:8080",
]


@pytest.mark.parametrize("text", DOCKER_VALID_NAMES)
def test_docker_valid_names(text):
    assert parse(parse(text).familiar_string()) == parse(text)


# Docker's TestParseRepositoryInfo: (path, familiar, full, other spellings of the same name).
REPOSITORY_INFO = [
    ("fooo/bar", "fooo/bar", "docker.io/fooo/bar", ["index.docker.io/fooo/bar"]),
    ("library/ubuntu", "ubuntu", "docker.io/library/ubuntu", ["library/ubuntu"]),
    ("nonlibrary/ubuntu", "nonlibrary/ubuntu", "docker.io/nonlibrary/ubuntu", []),
    ("other/library", "other/library", "docker.io/other/library", []),
    ("private/moonbase", "127.0.0.1:8000/private/moonbase", "127.0.0.1:8000/private/moonbase",
     []),
    ("privatebase", "127.0.0.1:8000/privatebase", "127.0.0.1:8000/privatebase", []),
    ("private/moonbase", "example.com/private/moonbase", "example.com/private/moonbase", []),
    ("privatebase", "example.com:8000/privatebase", "example.com:8000/privatebase", []),
    ("library/ubuntu-12.04-base", "ubuntu-12.04-base", "docker.io/library/ubuntu-12.04-base",
     ["index.docker.io/library/ubuntu-12.04-base"]),
    ("library/foo", "foo", "docker.io/library/foo", ["docker.io/foo"]),
    ("library/foo/bar", "library/foo/bar", "docker.io/library/foo/bar", []),
    ("store/foo/bar", "store/foo/bar", "docker.io/store/foo/bar", []),
    ("bar", "Foo/bar", "Foo/bar", []),
    ("bar", "FOO/bar", "FOO/bar", []),
]


@pytest.mark.parametrize("path,familiar,full,others", REPOSITORY_INFO,
                         ids=[row[2] for row in REPOSITORY_INFO])
def test_docker_repository_info(path, familiar, full, others):
    for text in [familiar, full] + others:
        ref = parse(text, default_tag=None)
        assert ref.path == path
        assert ref.familiar == familiar
        assert ref.name == full
        assert str(ref) == full


# Docker's TestReferenceParse for its plain Parse: input with a domain -> (name, tag, digest).
PARSE_NORMALIZED = [
    ("test.com/repo:tag", "test.com/repo", "tag", None),
    ("test:5000/repo", "test:5000/repo", None, None),
    ("test:5000/repo@" + D64, "test:5000/repo", None, D64),
    ("test:5000/repo:tag@" + D64, "test:5000/repo", "tag", D64),
    ("sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com/bar/baz/quux", None, None),
    ("192.168.1.1:5000/repo:5050", "192.168.1.1:5000/repo", "5050", None),
    ("[2001:db8::1]:5000/repo:tag@" + D64, "[2001:db8::1]:5000/repo", "tag", D64),
    ("[2001:db8:1:2:3:4:5:6]/repo:tag", "[2001:db8:1:2:3:4:5:6]/repo", "tag", None),
    ("[2001:db8::]:5000/repo", "[2001:db8::]:5000/repo", None, None),
    ("a/" * 126 + "a:tag-puts-this-over-max", "a/" * 126 + "a", "tag-puts-this-over-max", None),
]


@pytest.mark.parametrize("text,name,tag,digest", PARSE_NORMALIZED,
                         ids=[row[0][:40] for row in PARSE_NORMALIZED])
def test_parse_normalized(text, name, tag, digest):
    ref = parse_normalized(text)
    assert (ref.name, ref.tag, ref.digest) == (name, tag, digest)
    assert str(ref) == text


@pytest.mark.parametrize("text,message", [
    ("", "repository name must have at least one component"),
    ("test:5000/Uppercase/lowercase:tag", "repository name must be lowercase"),
    ("[2001:db8::1]:tag", "invalid reference format"),
    ("[fe80::1%@invalidzone]:5000/repo", "invalid reference format"),
    ("repo@sha256:" + "f" * 34, "invalid checksum digest length"),
    ("a/" * 128 + "a:tag", "repository name must not be more than 255 characters"),
    ("busybox", "invalid reference format: 'busybox' names no registry"),
])
def test_parse_normalized_errors(text, message):
    with pytest.raises(InvalidArgument) as info:
        parse_normalized(text)
    assert str(info.value) == message


def test_default_tag():
    assert parse("busybox", default_tag=None).tag is None
    assert str(parse("busybox", default_tag=None)) == "docker.io/library/busybox"
    assert parse("busybox", default_tag="edge").tag == "edge"
    # A digest alone is not given a tag.
    assert parse("busybox@" + D2).tag is None


def test_with_tag_and_digest():
    ref = parse("test.com:8000/foo", default_tag=None)
    assert str(ref.with_tag("TAG5")) == "test.com:8000/foo:TAG5"
    both = ref.with_digest(D2).with_tag("TAG5")
    assert str(both) == "test.com:8000/foo:TAG5@" + D2
    assert str(both.docker_ref()) == "test.com:8000/foo@" + D2
    assert str(both.without_digest()) == "test.com:8000/foo:TAG5"
    assert str(both.without_tag()) == "test.com:8000/foo@" + D2
    assert parse("busybox").docker_ref() == parse("busybox")
    for bad in ("-foo", "", "a" * 129, "bad tag", "é"):
        with pytest.raises(InvalidArgument, match="invalid tag format"):
            ref.with_tag(bad)
    with pytest.raises(InvalidArgument, match="invalid checksum digest format"):
        ref.with_digest("foo")


def test_reference_is_frozen_and_hashable():
    ref = parse("busybox")
    with pytest.raises(AttributeError):
        ref.tag = "x"
    assert {ref: 1}[parse("docker.io/library/busybox:latest")] == 1
    assert ref == Reference(domain="docker.io", path="library/busybox", tag="latest")


def test_is_identifier():
    assert is_identifier("f" * 64)
    assert not is_identifier("f" * 63)
    assert not is_identifier("F" * 64)


@pytest.mark.parametrize("domain,insecure", [
    ("localhost", True), ("localhost:5000", True), ("LOCALHOST:5000", True),
    ("127.0.0.1", True), ("127.0.0.1:5000", True), ("127.1.2.3:80", True),
    ("[::1]", True), ("[::1]:5000", True), ("::1", True),
    ("docker.io", False), ("registry.example.com:5000", False), ("10.0.0.1:5000", False),
    ("128.0.0.1", False), ("[2001:db8::1]:5000", False), ("localhost.example.com", False),
])
def test_is_insecure_default(domain, insecure):
    assert is_insecure_default(domain) is insecure


def test_split_host_port():
    assert split_host_port("localhost:5000") == ("localhost", "5000")
    assert split_host_port("[::1]:5000") == ("::1", "5000")
    assert split_host_port("[::1]") == ("::1", "")
    assert split_host_port("docker.io") == ("docker.io", "")
