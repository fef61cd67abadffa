"""How berth prints: Docker's tables, human sizes and durations, and --format templates.

``render(template, rows)`` understands the Go-template subset people use with docker:
``{{.Field}}``, ``{{json .}}``, ``{{json .Field}}``, ``{{.Field.Sub}}``, ``{{index .Map "k"}}``,
``{{upper .F}}``/``{{lower .F}}``/``{{title .F}}``, ``{{join .List ","}}``, ``{{println}}``,
``{{if .F}}...{{else}}...{{end}}``, and the ``table`` prefix, which prints a header row and
aligns columns separated by ``\\t``.
"""

import time

# ---------------------------------------------------------------- units (go-units' rules)

_DECIMAL = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def print_inspected(ctx, template, found, failed=False):
    """`inspect`'s output: ``template`` (--format) applied to each object found, or the
    objects as a JSON array (left out when every name failed and none was found)."""
    if template:
        from berth.flags import UsageError

        try:
            ctx.out(render(template, found))
        except TemplateError as err:
            raise UsageError(str(err)) from None
    elif found or not failed:
        import json

        ctx.out(json.dumps(found, indent=4))


def human_size(n, precision=3):
    """4.26MB, as docker prints sizes (decimal units, 3 significant digits)."""
    return _scaled(n, 1000, _DECIMAL, precision)


def bytes_size(n, precision=4):
    """1.5GiB, as docker prints memory (binary units)."""
    return _scaled(n, 1024, _BINARY, precision)


def _scaled(n, base, units, precision):
    n = float(n)
    i = 0
    while n >= base and i < len(units) - 1:
        n /= base
        i += 1
    return f"{_gfmt(n, precision)}{units[i]}"


def _gfmt(x, precision):
    text = f"{x:.{precision}g}"
    if "e" in text:
        text = f"{x:.0f}"
    return text


def human_duration(seconds):
    """go-units HumanDuration: 'Less than a second', '3 seconds', 'About a minute', ..."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(s / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def ago(timestamp, now=None):
    """'2 weeks ago' for a UNIX timestamp."""
    now = time.time() if now is None else now
    return human_duration(max(0, now - timestamp)) + " ago"


def parse_time(text):
    """An RFC 3339 timestamp (nanoseconds allowed) as a UNIX time; 0 when empty or bad."""
    if not text:
        return 0.0
    text = text.strip()
    zone = 0
    if text.endswith("Z"):
        text = text[:-1]
    elif len(text) > 6 and text[-6] in "+-" and text[-3] == ":":
        sign = 1 if text[-6] == "+" else -1
        zone = sign * (int(text[-5:-3]) * 3600 + int(text[-2:]) * 60)
        text = text[:-6]
    main, _, frac = text.partition(".")
    date, _, clock = main.partition("T")
    fields = date.split("-") + clock.split(":")
    # By hand: time.strptime loads _strptime (re, locale, calendar: ~6 ms of every `ps`).
    if len(fields) != 6 or not all(f.isdigit() and f.isascii() for f in fields):
        return 0.0
    year, month, day, hour, minute, second = map(int, fields)
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour <= 23 and minute <= 59
            and second <= 61):
        return 0.0
    base = _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second
    return base - zone + (float("0." + frac) if frac.isdigit() else 0.0)


def _days_from_civil(year, month, day):
    """Days since 1970-01-01 of a proleptic Gregorian date (calendar.timegm's arithmetic)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


# ---------------------------------------------------------------- tables

def table(headers, rows, gap=3):
    """Left-aligned columns separated by at least ``gap`` spaces (Docker's tabwriter)."""
    cols = [list(map(str, headers))] + [list(map(str, r)) for r in rows]
    widths = [max(len(c[i]) for c in cols) for i in range(len(headers))]
    out = []
    for c in cols:
        cells = [c[i].ljust(widths[i]) if i < len(c) - 1 else c[i] for i in range(len(c))]
        out.append((" " * gap).join(cells).rstrip())
    return "\n".join(out)


# ---------------------------------------------------------------- templates

class TemplateError(ValueError):
    pass


def render(template, rows, headers=None):
    """Render ``template`` once per row (dicts); a leading 'table' adds a header row."""
    template = template.replace("\\t", "\t").replace("\\n", "\n")
    is_table = template.startswith("table")
    if is_table:
        template = template[5:].lstrip()
    nodes = _parse(template)
    lines = [_eval_nodes(nodes, row) for row in rows]
    if not is_table:
        return "\n".join(lines)
    head = _header(template, headers or {})
    grid = [head.split("\t")] + [line.split("\t") for line in lines]
    width = max(len(r) for r in grid)
    widths = [max(len(r[i]) if i < len(r) else 0 for r in grid) for i in range(width)]
    out = []
    for r in grid:
        out.append("   ".join(r[i].ljust(widths[i]) if i < len(r) - 1 else r[i]
                              for i in range(len(r))).rstrip())
    return "\n".join(out)


def _header(template, headers):
    def name(field):
        return headers.get(field, _upper_words(field))
    out = []
    i = 0
    while i < len(template):
        j = template.find("{{", i)
        if j < 0:
            out.append(template[i:])
            break
        out.append(template[i:j])
        k = template.find("}}", j)
        expr = template[j + 2:k].strip()
        field = expr.split()[-1] if expr else ""
        out.append(name(field.lstrip(".")) if field.startswith(".") else "")
        i = k + 2
    return "".join(out)


def _upper_words(field):
    out = []
    for i, ch in enumerate(field):
        if ch.isupper() and i and not field[i - 1].isupper():
            out.append(" ")
        out.append(ch.upper())
    return "".join(out)


def _parse(template):
    """A list of nodes: str, ("expr", text), ("if", expr, then_nodes, else_nodes)."""
    tokens = []
    i = 0
    while i < len(template):
        j = template.find("{{", i)
        if j < 0:
            tokens.append(template[i:])
            break
        if j > i:
            tokens.append(template[i:j])
        k = template.find("}}", j)
        if k < 0:
            raise TemplateError("template: unclosed action")
        inner = template[j + 2:k]
        tokens.append(("action", inner.strip("- ").strip()))
        i = k + 2
    nodes, rest = _block(tokens, 0)
    if rest != len(tokens):
        raise TemplateError("template: unexpected {{end}}")
    return nodes


def _block(tokens, i):
    nodes = []
    while i < len(tokens):
        tok = tokens[i]
        if isinstance(tok, str):
            nodes.append(tok)
            i += 1
            continue
        text = tok[1]
        if text.startswith("if "):
            then, i = _block(tokens, i + 1)
            other = []
            if i < len(tokens) and tokens[i] == ("action", "else"):
                other, i = _block(tokens, i + 1)
            if i >= len(tokens) or tokens[i] != ("action", "end"):
                raise TemplateError("template: unexpected EOF")
            nodes.append(("if", text[3:].strip(), then, other))
            i += 1
            continue
        if text in ("else", "end"):
            return nodes, i
        nodes.append(("expr", text))
        i += 1
    return nodes, i


def _eval_nodes(nodes, data):
    out = []
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif node[0] == "if":
            branch = node[2] if _truthy(_eval_expr(node[1], data)) else node[3]
            out.append(_eval_nodes(branch, data))
        else:
            value = _eval_expr(node[1], data)
            out.append(_show(value))
    return "".join(out)


def _truthy(v):
    return bool(v) and v != "0"


def _show(v):
    if v is None:
        return "<no value>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(_show(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{_show(x)}" for k, x in sorted(v.items())) + "]"
    return str(v)


def _split_args(text):
    args = []
    i = 0
    while i < len(text):
        if text[i] == " ":
            i += 1
            continue
        if text[i] == '"':
            j = text.index('"', i + 1)
            args.append(("lit", text[i + 1:j]))
            i = j + 1
            continue
        j = i
        while j < len(text) and text[j] != " ":
            j += 1
        args.append(("ref", text[i:j]))
        i = j
    return args


def _value(arg, data):
    kind, text = arg
    if kind == "lit":
        return text
    if text == ".":
        return data
    if text.startswith("."):
        cur = data
        for part in text[1:].split("."):
            if isinstance(cur, dict):
                cur = cur.get(part)
            else:
                cur = getattr(cur, part, None)
        return cur
    if text.isdigit():
        return int(text)
    raise TemplateError(f'template: function "{text}" not defined')


def _json_dumps(value):
    import json  # templates are a rare path; json costs ~5 ms to import

    return json.dumps(value, separators=(",", ":"))


_FUNCS = {
    "json": lambda v: _json_dumps(v),
    "upper": lambda v: str(v).upper(),
    "lower": lambda v: str(v).lower(),
    "title": lambda v: str(v).title(),
    "join": lambda v, sep: sep.join(map(str, v or [])),
    "index": lambda v, k: (v or {}).get(k) if isinstance(v, dict) else (v or [])[int(k)],
    "len": lambda v: len(v or ()),
    "println": lambda *v: " ".join(map(_show, v)) + "\n",
    "printf": lambda fmt, *v: _printf(fmt, v),
    "truncate": lambda v, n: str(v)[:int(n)],
}


def _printf(fmt, values):
    out = fmt
    for v in values:
        for spec in ("%s", "%d", "%v", "%q"):
            if spec in out:
                out = out.replace(spec, (f'"{v}"' if spec == "%q" else _show(v)), 1)
                break
    return out


def _eval_expr(text, data):
    args = _split_args(text)
    if not args:
        return ""
    head = args[0]
    if head[0] == "ref" and head[1] in _FUNCS:
        return _FUNCS[head[1]](*[_value(a, data) for a in args[1:]])
    if len(args) == 1:
        return _value(head, data)
    raise TemplateError(f"template: can't evaluate {text!r}")
