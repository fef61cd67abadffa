"""`berth-oci list [--format table|json] [--quiet]`: the containers under --root.

Output as runc's: a table aligned as Go's tabwriter (minimum width 12, padding 3), or a
JSON array of runc's containerState objects (``null`` when there are none, as runc prints).
The owner is the user owning the container's state directory; a stopped container's pid is 0.
"""

from berth.sys import fastos as os
import sys

from berth.errors import BerthError, InvalidArgument
from berth.runtime import _args
from berth.runtime.state import Container, list_ids

USAGE = "usage: berth-oci list [--format table|json] [--quiet]\n"

FLAGS = _args.table(
    ("--format", "-f", "value", "table"),
    ("--quiet", "-q", "bool", False),
)

HEADER = ("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")


def rfc3339nano(stamp):
    """A stored RFC 3339 time with Go's RFC3339Nano trimming: no trailing zeros in the fraction."""
    dot = stamp.find(".")
    if dot < 0:
        return stamp
    end = dot + 1
    while end < len(stamp) and "0" <= stamp[end] <= "9":
        end += 1
    frac = stamp[dot + 1:end].rstrip("0")
    return stamp[:dot] + ("." + frac if frac else "") + stamp[end:]


def _owner(path):
    try:
        uid = os.stat(path).st_uid
    except OSError:
        return ""
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"#{uid}"


def containers(root):
    """runc's containerState for each loadable container, ordered by id."""
    out = []
    for cid in list_ids(root):
        try:
            c = Container.load(root, cid)
        except BerthError as err:
            # A container deleted meanwhile, or a damaged record: runc skips it too.
            sys.stderr.write(f"berth-oci: load container {cid}: {err}\n")
            continue
        st = c.oci_state()
        item = {"ociVersion": st["ociVersion"], "id": cid, "pid": st["pid"],
                "status": st["status"], "bundle": st["bundle"], "rootfs": st["rootfs"],
                "created": rfc3339nano(st["created"])}
        if st.get("annotations"):
            item["annotations"] = st["annotations"]
        item["owner"] = _owner(c.dir)
        out.append(item)
    return out


def table(rows, minwidth=12, padding=3):
    """Rows of cells as Go's tabwriter aligns them; the last cell of a row is not padded."""
    widths = []
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            w = max(len(cell) + padding, minwidth)
            if i == len(widths):
                widths.append(w)
            elif w > widths[i]:
                widths[i] = w
    lines = []
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        lines.append("".join(cells) + row[-1] + "\n")
    return "".join(lines)


def main(g, verb, argv):
    opts, args = _args.parse(argv, FLAGS)
    if args:
        raise InvalidArgument(f'"{verb}" requires exactly 0 argument(s)')
    fmt = opts["format"]
    if fmt not in ("table", "json"):
        raise InvalidArgument(f"invalid format option {fmt!r}: use table or json")
    items = containers(g.root)
    if opts["quiet"]:
        sys.stdout.write("".join(item["id"] + "\n" for item in items))
    elif fmt == "json":
        from berth.spec import jsonio
        sys.stdout.write(jsonio.dumps(items or None) + "\n")
    else:
        rows = [HEADER] + [(i["id"], str(i["pid"]), i["status"], i["bundle"], i["created"],
                            i["owner"]) for i in items]
        sys.stdout.write(table(rows))
    return 0
