"""Container logs in Docker's json-file format: the writer the monitor feeds, the reader
`berth logs` uses.

One JSON object a line, as Docker writes it::

    {"log":"hello\\n","stream":"stdout","time":"2026-01-02T03:04:05.123456789Z"}

Output is cut at each newline; a line longer than 16 KiB is cut into pieces that end
without one, and a partial line left when the container exits is written as it is.
With a max size the file is rolled before it would pass it: <id>-json.log becomes .log.1,
.log.1 becomes .log.2 ... up to max-file files in all (max-file 1: the file is emptied).

The writer lives in every container's monitor, so this module imports only ``os``,
``time`` and ``_json`` at the top; the reader's helpers import more, lazily.
"""

import os
import time
from _json import encode_basestring as _quote

_CHUNK = 16 * 1024
_last_second = [-1, ""]


def now():
    """The time as Docker stamps log lines: RFC 3339 in UTC with nine fraction digits."""
    ns = time.time_ns()
    secs, frac = divmod(ns, 1_000_000_000)
    if secs != _last_second[0]:
        _last_second[0] = secs
        _last_second[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    return f"{_last_second[1]}.{frac:09d}Z"


def encode_entry(stream, data, when):
    """One log line (bytes, newline-terminated) for ``data`` (bytes) of ``stream``."""
    text = data.decode("utf-8", "replace")
    quoted = _quote(text)
    # Go's encoder, which Docker uses, escapes these too; readers may rely on it.
    if "<" in quoted or ">" in quoted or "&" in quoted or "\u2028" in quoted or \
            "\u2029" in quoted:
        quoted = (quoted.replace("<", "\\u003c").replace(">", "\\u003e")
                  .replace("&", "\\u0026").replace("\u2028", "\\u2028")
                  .replace("\u2029", "\\u2029"))
    return f'{{"log":{quoted},"stream":"{stream}","time":"{when}"}}\n'.encode()


class JsonFileWriter:
    """Appends a container's output to ``path`` line by line, rolling it by size."""

    def __init__(self, path, max_size=0, max_file=1):
        self.path = path
        self.max_size = max(0, int(max_size or 0))
        self.max_file = max(1, int(max_file or 1))
        self._partial = {}
        self._fd = -1
        self._size = 0
        self._open()

    def _open(self):
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                           0o640)
        self._size = os.fstat(self._fd).st_size

    def write(self, stream, data, when=None):
        """Log ``data`` (bytes) read from ``stream`` ("stdout" or "stderr")."""
        buf = self._partial.pop(stream, b"") + data if stream in self._partial else data
        when = when or now()
        entries = []
        start = 0
        while True:
            end = buf.find(b"\n", start)
            if end < 0:
                break
            if end + 1 - start > _CHUNK:
                # A very long line: whole chunks first, the rest with its newline.
                while end + 1 - start > _CHUNK:
                    entries.append(encode_entry(stream, buf[start:start + _CHUNK], when))
                    start += _CHUNK
            entries.append(encode_entry(stream, buf[start:end + 1], when))
            start = end + 1
        while len(buf) - start >= _CHUNK:
            entries.append(encode_entry(stream, buf[start:start + _CHUNK], when))
            start += _CHUNK
        if start < len(buf):
            self._partial[stream] = buf[start:]
        self._emit(entries)

    def flush_partial(self, when=None):
        """Write the partial lines kept so far (the container exited): no newline added."""
        when = when or now()
        entries = [encode_entry(s, data, when) for s, data in self._partial.items() if data]
        self._partial.clear()
        self._emit(entries)

    def _emit(self, entries):
        if not entries:
            return
        if not self.max_size:
            self._write(b"".join(entries))
            return
        batch = []
        size = self._size
        for entry in entries:
            if size and size + len(entry) > self.max_size:
                self._write(b"".join(batch))
                batch = []
                self._rotate()
                size = 0
            batch.append(entry)
            size += len(entry)
        self._write(b"".join(batch))

    def _write(self, data):
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._size += len(data)

    def _rotate(self):
        os.close(self._fd)
        self._fd = -1
        if self.max_file == 1:
            os.truncate(self.path, 0)
        else:
            for i in range(self.max_file - 1, 1, -1):
                try:
                    os.rename(f"{self.path}.{i - 1}", f"{self.path}.{i}")
                except FileNotFoundError:
                    pass
            os.rename(self.path, self.path + ".1")
        self._open()

    def close(self):
        self.flush_partial()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


# ---------------------------------------------------------------- reading

class Entry:
    """One log record: stream name, time as written, and the bytes logged."""

    __slots__ = ("stream", "time", "data")

    def __init__(self, stream, time_, data):
        self.stream = stream
        self.time = time_
        self.data = data

    def __repr__(self):
        return f"Entry({self.stream!r}, {self.time!r}, {self.data!r})"

    def format(self, timestamps=False):
        """The bytes `docker logs` prints for this record."""
        return (self.time.encode() + b" " + self.data) if timestamps else self.data


def log_files(path):
    """The rolled files then the current one, oldest first (those that exist)."""
    rolled = []
    i = 1
    while os.path.exists(f"{path}.{i}"):
        rolled.append(f"{path}.{i}")
        i += 1
    return rolled[::-1] + ([path] if os.path.exists(path) else [])


def _parse(line):
    from berth.spec import jsonio

    try:
        obj = jsonio.loads(line, "log line")
        return Entry(obj.get("stream", "stdout"), obj.get("time", ""),
                     obj.get("log", "").encode("utf-8", "surrogateescape"))
    except Exception:  # noqa: BLE001 - a torn or foreign line is skipped, as Docker does
        return None


def read_logs(path, *, follow=False, tail=None, since=None, until=None, stdout=True,
              stderr=True, running=None, poll_interval=0.1):
    """Yield the log's ``Entry``s, oldest first.

    ``tail``: the last N records only (None or "all": every one); ``since``/``until``:
    nanoseconds since the epoch (see ``parse_time``), records at or after / at or before;
    ``follow``: after the end, wait for more while ``running()`` says the container runs
    (it is asked again once it says no, so output written just before the exit is read).
    """
    streams = {s for s, on in (("stdout", stdout), ("stderr", stderr)) if on}

    def keep(e):
        if e is None or e.stream not in streams:
            return False
        if since is not None or until is not None:
            t = time_ns(e.time)
            if since is not None and t < since:
                return False
            if until is not None and t > until:  # Docker: entries after --until end it
                return False
        return True

    files = log_files(path)
    tail_n = None if tail in (None, "all") or int(tail) < 0 else int(tail)
    if tail_n is not None:
        import collections
        last = collections.deque(maxlen=tail_n)
        for name in files:
            with open(name, "rb") as f:
                for line in f:
                    e = _parse(line)
                    if keep(e):
                        last.append(e)
        if tail_n:
            yield from last
        current = _open_at_end(path) if follow else None
    else:
        current = None
        for name in files:
            f = open(name, "rb")
            if follow and name == path:
                current = f
                break
            with f:
                for line in f:
                    e = _parse(line)
                    if keep(e):
                        yield e
        if current is not None:
            yield from _read_whole_lines(current, keep)
        elif follow:
            current = _open_at_end(path, start=True)
    if not follow:
        return
    yield from _follow(path, current, keep, running or (lambda: False), poll_interval)


def _open_at_end(path, start=False):
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return None
    if not start:
        f.seek(0, os.SEEK_END)
    return f


def _read_whole_lines(f, keep, pending=b""):
    """Yield the kept entries of the complete lines from ``f``'s offset on; a torn last
    line is left unread (its offset restored) for the next call."""
    while True:
        pos = f.tell()
        line = f.readline()
        if not line:
            return
        if not line.endswith(b"\n"):
            f.seek(pos)
            return
        e = _parse(line)
        if keep(e):
            yield e


def _follow(path, f, keep, running, poll_interval):
    try:
        while True:
            alive = running()
            if f is None:
                f = _open_at_end(path, start=True)
            if f is not None:
                yield from _read_whole_lines(f, keep)
                f = yield from _reopen_if_rolled(path, f, keep)
                yield from _read_whole_lines(f, keep)
            if not alive:
                return
            time.sleep(poll_interval)
    finally:
        if f is not None:
            f.close()


def _open_new(path):
    """Open the current file, which a roll leaves missing for an instant."""
    for _ in range(100):
        try:
            return open(path, "rb")
        except FileNotFoundError:
            time.sleep(0.01)
    return open(path, "rb")


def _reopen_if_rolled(path, f, keep):
    """Switch to the new file when the writer rolled or emptied the one we read (a
    generator: yields what was written in between, returns the file to read on).

    The old file is drained through the fd we hold (renamed or even deleted since), then
    the files rolled after it (``path.K-1`` .. ``path.1``, when it is now ``path.K``; all of
    them when it fell off the end), so a follower that lags several rotations loses
    nothing the writer kept."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return f
    mine = os.fstat(f.fileno())
    if (st.st_ino, st.st_dev) == (mine.st_ino, mine.st_dev):
        if st.st_size < f.tell():
            f.seek(0)
        return f
    yield from _read_whole_lines(f, keep)
    f.close()
    # Opened before the scan: a roll during the scan then moves a file we will read on.
    current = _open_new(path)
    ours = os.fstat(current.fileno())
    newer = []
    i = 1
    while True:
        try:
            rolled = os.stat(f"{path}.{i}")
        except FileNotFoundError:
            break
        if (rolled.st_ino, rolled.st_dev) == (mine.st_ino, mine.st_dev):
            break
        if (rolled.st_ino, rolled.st_dev) != (ours.st_ino, ours.st_dev):
            newer.append(f"{path}.{i}")
        i += 1
    for name in reversed(newer):
        try:
            with open(name, "rb") as old:
                yield from _read_whole_lines(old, keep)
        except FileNotFoundError:  # rolled off while we read the ones before
            continue
    return current


# ---------------------------------------------------------------- times

_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
          "m": 60_000_000_000, "h": 3_600_000_000_000}


def time_ns(text):
    """Nanoseconds since the epoch of an RFC 3339 time ("2026-01-02T03:04:05.5Z",
    "+01:00" offsets, or a date alone); ValueError when it is not one."""
    date, _, rest = text.partition("T")
    y, mo, d = (int(x) for x in date.split("-"))
    secs = _days_from_civil(y, mo, d) * 86400
    frac_ns = 0
    offset = 0
    if rest:
        zone_at = len(rest)
        for i, ch in enumerate(rest):
            if ch in "Zz+-":
                zone_at = i
                break
        clock, zone = rest[:zone_at], rest[zone_at:]
        hms, _, frac = clock.partition(".")
        parts = [int(x) for x in hms.split(":")]
        if len(parts) == 2:
            parts.append(0)
        h, mi, s = parts
        secs += h * 3600 + mi * 60 + s
        if frac:
            frac_ns = int((frac + "000000000")[:9])
        if zone and zone not in "Zz":
            zh, _, zm = zone[1:].partition(":")
            offset = (int(zh) * 3600 + int(zm or 0) * 60) * (1 if zone[0] == "+" else -1)
    return (secs - offset) * 1_000_000_000 + frac_ns


def _days_from_civil(y, m, d):
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def parse_time(value, flag="since", now_ns=None):
    """Nanoseconds since the epoch of a --since/--until value, as Docker reads them: an
    RFC 3339 time or date, Unix seconds ("1700000000.5"), or a duration before now
    ("10m", "1h30m")."""
    from berth.errors import InvalidArgument

    text = str(value).strip()
    now_ns = time.time_ns() if now_ns is None else now_ns
    try:
        if text.replace(".", "", 1).isdigit():
            whole, _, frac = text.partition(".")
            return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9])
        if "-" in text[1:] and text[:4].isdigit():
            return time_ns(text)
        return now_ns - _duration_ns(text)
    except (ValueError, KeyError):
        raise InvalidArgument(f'invalid value for "{flag}": failed to parse value as time '
                              f'or duration: "{text}"') from None


def _duration_ns(text):
    """Go's time.ParseDuration for what a user types: "90s", "1h30m", "1.5h", "250ms"."""
    if not text:
        raise ValueError(text)
    total = 0.0
    i = 0
    n = len(text)
    while i < n:
        j = i
        while j < n and (text[j].isdigit() or text[j] == "."):
            j += 1
        if j == i:
            raise ValueError(text)
        k = j
        while k < n and not (text[k].isdigit() or text[k] == "."):
            k += 1
        total += float(text[i:j]) * _UNITS[text[j:k]]
        i = k
    return int(total)
