"""berth-oci update's flag and size parsing, and events' Go duration parser."""
import pytest

from berth.errors import InvalidArgument, Unsupported
from berth.runtime import _args
from berth.runtime.verbs import update
from berth.runtime.verbs.events import parse_duration


@pytest.mark.parametrize("text,expected", [
    ("100", 100), ("0", 0), ("-1", -1),
    ("64m", 64 << 20), ("64M", 64 << 20), ("64MB", 64 << 20), ("64MiB", 64 << 20),
    ("64 m", 64 << 20), ("1k", 1024), ("1KiB", 1024), ("2g", 2 << 30), ("1t", 1 << 40),
    ("1p", 1 << 50), ("1.5g", 3 << 29), ("10b", 10), ("10B", 10),
])
def test_parse_size(text, expected):
    assert update.parse_size(text) == expected


@pytest.mark.parametrize("text", [
    "", "m", "abc", "12x", "-2", "-1m", "1.", ".5", "1..5", "1.2.3", "64mm", "64  m", "64mx",
    "99999999p",
])
def test_parse_size_rejects(text):
    with pytest.raises(InvalidArgument, match="invalid size"):
        update.parse_size(text)


def _flags(*argv):
    opts, rest = _args.parse(list(argv), update.FLAGS)
    return update.flag_resources(opts), rest


def test_flags_build_only_what_was_asked():
    raw, rest = _flags("--memory", "64m", "--memory-swap=-1", "--cpu-quota", "-1",
                       "--cpu-period", "100000", "--cpuset-cpus", "0-1", "--pids-limit", "10",
                       "--blkio-weight", "300", "ctr")
    assert rest == ["ctr"]
    assert raw == {"memory": {"limit": 64 << 20, "swap": -1},
                   "cpu": {"quota": -1, "period": 100000, "cpus": "0-1"},
                   "pids": {"limit": 10}, "blockIO": {"weight": 300}}


def test_no_flags_no_resources():
    assert _flags("ctr")[0] == {}


@pytest.mark.parametrize("argv,message", [
    (("--memory", "lots"), "--memory: invalid size"),
    (("--cpu-period", "-5"), "--cpu-period: '-5' is not an unsigned integer"),
    (("--cpu-share", "1.5"), "--cpu-share"),
    (("--cpu-quota", "x"), "--cpu-quota: 'x' is not an integer"),
    (("--cpu-period", str(1 << 64)), "out of range"),
])
def test_bad_flag_values(argv, message):
    with pytest.raises(InvalidArgument, match=message):
        _flags(*argv, "ctr")


def test_int_flag_and_unknown_flag():
    with pytest.raises(InvalidArgument, match="--pids-limit"):
        _flags("--pids-limit", "ten", "ctr")
    with pytest.raises(InvalidArgument, match="flag provided but not defined: --memroy"):
        _flags("--memroy", "1m", "ctr")


def test_intel_rdt_unsupported():
    with pytest.raises(Unsupported, match="--l3-cache-schema"):
        _flags("--l3-cache-schema", "L3:0=ff", "ctr")


def test_resources_document_filtered_and_overridden():
    doc = {"memory": {"limit": 1, "swappiness": 5}, "devices": [{"allow": True}],
           "cpu": {"shares": 2}, "pids": {"limit": 0}, "hugepageLimits": []}
    base = update.updatable(doc)
    assert base == {"memory": {"limit": 1}, "cpu": {"shares": 2}}
    merged = update.merge(base, _flags("--memory", "2m", "--cpu-quota", "5", "c")[0])
    assert merged == {"memory": {"limit": 2 << 20}, "cpu": {"shares": 2, "quota": 5}}
    assert base == {"memory": {"limit": 1}, "cpu": {"shares": 2}}  # not changed in place


def test_resources_document_must_be_objects():
    with pytest.raises(InvalidArgument, match="resources: must be a JSON object"):
        update.updatable([1])
    with pytest.raises(InvalidArgument, match="resources.memory: must be an object"):
        update.updatable({"memory": 5})


S = 1_000_000_000


@pytest.mark.parametrize("text,expected", [
    ("0", 0), ("5s", 5 * S), ("500ms", S // 2), ("1m", 60 * S), ("1h", 3600 * S),
    ("1m30s", 90 * S), ("1.5s", 3 * S // 2), (".5s", S // 2), ("1.s", S), ("-2s", -2 * S),
    ("+3s", 3 * S), ("10ns", 10), ("3us", 3000), ("3\u00b5s", 3000), ("3\u03bcs", 3000),
    ("2h45m0.5s", (2 * 3600 + 45 * 60) * S + S // 2),
])
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text,message", [
    ("", 'invalid duration ""'), ("s", 'invalid duration "s"'), ("-", 'invalid duration "-"'),
    (".s", 'invalid duration ".s"'), ("5", 'missing unit in duration "5"'),
    ("1m5", 'missing unit in duration "1m5"'), ("5x", 'unknown unit "x" in duration "5x"'),
    ("5 s", 'unknown unit " s"'), ("3000000h", 'invalid duration'),
])
def test_parse_duration_rejects(text, message):
    with pytest.raises(InvalidArgument, match=message):
        parse_duration(text)
