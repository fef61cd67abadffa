"""The json-file log writer and reader (berth.engine.logs), on plain files."""
import calendar
import json
import os
import re

import pytest

from berth.engine import logs
from berth.errors import InvalidArgument

T = "2026-01-02T03:04:05.000000001Z"


def lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_now_is_rfc3339_with_nine_digits():
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", logs.now())


def test_entry_is_dockers_line_format():
    raw = logs.encode_entry("stderr", b"a \"q\" <b> & \xff\n", T)
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1
    assert raw.startswith(b'{"log":"a \\"q\\" \\u003cb\\u003e \\u0026 \xef\xbf\xbd\\n",'
                          b'"stream":"stderr","time":"2026-01-02T03:04:05.000000001Z"}')
    assert json.loads(raw) == {"log": "a \"q\" <b> & \ufffd\n", "stream": "stderr", "time": T}


def test_writer_splits_at_newlines_and_keeps_partials_per_stream(tmp_path):
    path = str(tmp_path / "c-json.log")
    w = logs.JsonFileWriter(path)
    w.write("stdout", b"one\ntw", T)
    w.write("stderr", b"err", T)
    w.write("stdout", b"o\nthree\n", T)
    assert [(e["stream"], e["log"]) for e in lines(path)] == [
        ("stdout", "one\n"), ("stdout", "two\n"), ("stdout", "three\n")]
    w.close()  # partial lines are written as they are
    assert lines(path)[-1] == {"log": "err", "stream": "stderr", "time": lines(path)[-1]["time"]}


def test_long_lines_are_cut_in_16k_pieces(tmp_path):
    path = str(tmp_path / "c-json.log")
    w = logs.JsonFileWriter(path)
    w.write("stdout", b"x" * 40000 + b"\n", T)
    w.close()
    got = [e["log"] for e in lines(path)]
    assert [len(x) for x in got] == [16384, 16384, 40000 - 32768 + 1]
    assert "".join(got) == "x" * 40000 + "\n"


ONE = len(logs.encode_entry("stdout", b"line-00\n", T))  # bytes of one numbered line


def fill(path, count, max_size, max_file):
    """Write lines line-00.. line-<count-1> through a rolling writer; the lines read back."""
    w = logs.JsonFileWriter(path, max_size=max_size, max_file=max_file)
    for i in range(count):
        w.write("stdout", b"line-%02d\n" % i, T)
    w.close()
    return [int(e.data[5:7]) for e in logs.read_logs(path)]


def test_rotation_keeps_max_file_files_under_max_size(tmp_path):
    path = str(tmp_path / "c-json.log")
    assert fill(path, 20, 3 * ONE, 3) == list(range(12, 20))
    assert logs.log_files(path) == [path + ".2", path + ".1", path]
    assert not os.path.exists(path + ".3")
    assert all(os.path.getsize(p) <= 3 * ONE for p in logs.log_files(path))


def test_rotation_with_one_file_empties_it(tmp_path):
    path = str(tmp_path / "c-json.log")
    assert fill(path, 5, 2 * ONE, 1) == [4]
    assert logs.log_files(path) == [path]


def test_writer_appends_to_an_existing_log(tmp_path):
    path = str(tmp_path / "c-json.log")
    for word in (b"a\n", b"b\n"):
        w = logs.JsonFileWriter(path)
        w.write("stdout", word, T)
        w.close()
    assert [e.data for e in logs.read_logs(path)] == [b"a\n", b"b\n"]


@pytest.fixture
def sample(tmp_path):
    path = str(tmp_path / "c-json.log")
    w = logs.JsonFileWriter(path)
    for i, stream in enumerate(["stdout", "stderr", "stdout", "stderr"]):
        w.write(stream, b"m%d\n" % i, f"2026-01-02T03:04:0{i}.500000000Z")
    w.close()
    return path


def test_reader_filters(sample):
    def data(**kw):
        return [e.data for e in logs.read_logs(sample, **kw)]

    assert data() == [b"m0\n", b"m1\n", b"m2\n", b"m3\n"]
    assert data(stderr=False) == [b"m0\n", b"m2\n"]
    assert data(tail=1) == [b"m3\n"]
    assert data(tail=0) == []
    assert data(tail="all") == data()
    since = logs.parse_time("2026-01-02T03:04:01.5Z")
    until = logs.parse_time("2026-01-02T03:04:03Z")
    assert data(since=since) == [b"m1\n", b"m2\n", b"m3\n"]
    assert data(since=since, until=until) == [b"m1\n", b"m2\n"]
    first = next(logs.read_logs(sample))
    assert first.format(timestamps=True) == b"2026-01-02T03:04:00.500000000Z m0\n"
    assert first.format() == b"m0\n"


def follow_while_writing(tmp_path, max_file, bursts):
    """What a follower reads while, before each of its polls, the "container" writes the
    next burst of numbered lines into a log rolled every two lines."""
    path = str(tmp_path / "c-json.log")
    one = len(logs.encode_entry("stdout", b"n-00\n", T))
    w = logs.JsonFileWriter(path, max_size=2 * one, max_file=max_file)
    w.write("stdout", b"n-00\n", T)
    bursts = iter(bursts)

    def running():
        burst = next(bursts, None)
        if burst is None:
            return False
        for i in burst:
            w.write("stdout", b"n-%02d\n" % i, T)
        return True

    got = [e.data for e in logs.read_logs(path, follow=True, running=running,
                                          poll_interval=0)]
    w.close()
    return got


def test_follow_reads_appends_and_rolls_until_stopped(tmp_path):
    got = follow_while_writing(tmp_path, 2, [[i] for i in range(1, 6)])
    assert got == [b"n-%02d\n" % i for i in range(6)]


def test_follow_that_lags_several_rolls_loses_nothing_kept(tmp_path):
    # Between two polls the writer rolls once, twice, then past the reader's file.
    got = follow_while_writing(tmp_path, 4, [range(1, 4), range(4, 9), range(9, 13)])
    assert got == [b"n-%02d\n" % i for i in range(13)]


def test_follow_with_tail_starts_at_the_end(sample):
    got = [e.data for e in logs.read_logs(sample, follow=True, tail=1, running=lambda: False,
                                          poll_interval=0)]
    assert got == [b"m3\n"]


def test_a_torn_last_line_is_not_read(tmp_path):
    path = str(tmp_path / "c-json.log")
    with open(path, "wb") as f:
        f.write(logs.encode_entry("stdout", b"ok\n", T) + b'{"log":"to')
    assert [e.data for e in logs.read_logs(path, follow=True, running=lambda: False)] == \
        [b"ok\n"]


def test_time_ns_matches_the_calendar():
    base = calendar.timegm((2026, 3, 1, 12, 30, 15)) * 10**9
    assert logs.time_ns("2026-03-01T12:30:15Z") == base
    assert logs.time_ns("2026-03-01T12:30:15.25Z") == base + 250_000_000
    assert logs.time_ns("2026-03-01T14:30:15+02:00") == base
    assert logs.time_ns("2026-03-01") == calendar.timegm((2026, 3, 1, 0, 0, 0)) * 10**9
    assert logs.time_ns("1969-12-31T23:59:59Z") == -10**9


def test_parse_time_forms():
    now = 1_800_000_000 * 10**9
    assert logs.parse_time("1700000000", now_ns=now) == 1_700_000_000 * 10**9
    assert logs.parse_time("1700000000.5", now_ns=now) == 1_700_000_000_500_000_000
    assert logs.parse_time("10m", now_ns=now) == now - 600 * 10**9
    assert logs.parse_time("1h30m", now_ns=now) == now - 5400 * 10**9
    assert logs.parse_time("250ms", now_ns=now) == now - 250_000_000
    assert logs.parse_time("2026-01-02T03:04:05Z") == logs.time_ns("2026-01-02T03:04:05Z")
    with pytest.raises(InvalidArgument) as info:
        logs.parse_time("soon", flag="until")
    assert str(info.value) == ('invalid value for "until": failed to parse value as time '
                               'or duration: "soon"')


def test_the_writer_side_imports_little():
    import subprocess

    src = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "src")
    code = (f"import sys; sys.path.insert(0, {src!r}); before = set(sys.modules); "
            "import berth.engine.logs, berth.engine.monitor; "
            "print(' '.join(sorted(set(sys.modules) - before)))")
    out = subprocess.run(["/usr/bin/python3", "-IS", "-c", code], capture_output=True,
                         text=True, check=True).stdout.split()
    heavy = {"json", "re", "enum", "typing", "socket", "subprocess", "logging", "ctypes",
             "collections", "dataclasses", "pathlib", "signal", "argparse"}
    assert not heavy & set(out), out
