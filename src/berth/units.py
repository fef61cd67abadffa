"""Docker's value grammars for sizes, durations and CPU counts, with Docker's error words.

``ram_in_bytes("1.5g")`` reads a size as Docker's ``-m``/``--shm-size`` do (binary units, an
optional ``i``/``b``: ``512m``, ``1GiB``, ``64 kb``); ``parse_duration("1m30s")`` reads a Go
duration into nanoseconds; ``parse_cpus("1.5")`` turns ``--cpus`` into NanoCpus. Each raises
``ValueError`` carrying the message Docker prints after ``invalid argument "x" for ... flag:``.
"""

_BINARY = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}

_DURATION_UNITS = {
    "ns": 1, "us": 1_000, "\u00b5s": 1_000, "\u03bcs": 1_000, "ms": 1_000_000,
    "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000,
}


def ram_in_bytes(text):
    """Bytes in ``text``: digits with an optional fraction, an optional space, then an optional
    unit among k m g t p (any case, powers of 1024) with an optional ``b`` or ``ib``."""
    end = -1
    for i, ch in enumerate(text):
        if ch.isdigit() and ch.isascii() or ch in ". ":
            end = i
    if end == -1:
        raise ValueError(f"invalid size: '{text}'")
    if text[end] == " ":
        number, suffix = text[:end], text[end + 1:]
    else:
        number, suffix = text[:end + 1], text[end + 1:]
    if not _plain_number(number):
        raise ValueError(f'strconv.ParseFloat: parsing "{number}": invalid syntax')
    size = float(number)
    if size < 0:
        raise ValueError(f"invalid size: '{text}'")
    if not suffix:
        return int(size)
    if len(suffix) > 3:
        raise ValueError(f"invalid suffix: '{suffix}'")
    low = suffix.lower()
    if low == "b":
        return int(size)
    mult = _BINARY.get(low[0])
    if mult is None or (len(low) == 2 and low[1] != "b") or (len(low) == 3 and low[1:] != "ib"):
        raise ValueError(f"invalid suffix: '{low}'")
    return int(size * mult)


def _plain_number(text):
    # Go's ParseFloat would take "1e3" or "inf" too, but those cannot reach here: the number
    # part ends at the last digit, dot or space, and Docker's grammar is digits and a dot.
    digits = text[1:] if text[:1] in ("-", "+") else text
    return digits.count(".") <= 1 and digits.replace(".", "").isdigit() and digits.isascii()


def parse_duration(text):
    """Nanoseconds in a Go duration such as ``30s``, ``1m30s``, ``1.5h``, ``-2ms`` or ``0``."""
    invalid = ValueError(f'time: invalid duration "{text}"')
    s = text
    sign = 1
    if s[:1] in ("-", "+"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise invalid
    total = 0
    while s:
        i = 0
        while i < len(s) and s[i].isascii() and s[i].isdigit():
            i += 1
        whole = s[:i]
        frac = ""
        if i < len(s) and s[i] == ".":
            j = i + 1
            while j < len(s) and s[j].isascii() and s[j].isdigit():
                j += 1
            frac = s[i + 1:j]
            i = j
        if not whole and not frac:
            raise invalid
        s = s[i:]
        j = 0
        while j < len(s) and s[j] != "." and not (s[j].isascii() and s[j].isdigit()):
            j += 1
        unit = s[:j]
        s = s[j:]
        if not unit:
            raise ValueError(f'time: missing unit in duration "{text}"')
        scale = _DURATION_UNITS.get(unit)
        if scale is None:
            raise ValueError(f'time: unknown unit "{unit}" in duration "{text}"')
        total += int(whole or "0") * scale
        if frac:
            total += int(frac) * scale // 10 ** len(frac)
    if total > (1 << 63) - 1:
        raise invalid
    return sign * total


def parse_cpus(text):
    """NanoCpus for ``--cpus``: a decimal or a fraction, exact to the nanosecond."""
    from fractions import Fraction

    try:
        value = Fraction(text.strip() if text == text.strip() else "x")
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"failed to parse {text} as a rational number") from None
    nano = value * 1_000_000_000
    if nano.denominator != 1:
        raise ValueError("value is too precise")
    return int(nano)

