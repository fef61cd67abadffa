"""`berth-oci ps [--format table|json] ID [ps options]`: the processes in a container.

json prints the host pids in the container's cgroup; table runs the host's ``ps`` (``-ef``
unless options follow the id) and keeps its header and the lines whose PID is one of them.
"""

import sys

from berth.errors import Conflict, InvalidArgument, NotFound, SystemFailure
from berth.runtime import _args
from berth.runtime.main import need_id
from berth.runtime.state import Container

USAGE = "usage: berth-oci ps [--format table|json] ID [ps options]\n"

FLAGS = _args.table(("--format", "-f", "value", "table"))


def container_pids(root, container_id):
    c = Container.load(root, container_id)
    if c.status() == "stopped":
        raise Conflict(f"container {container_id} is not running")

    return c.cgroup().pids()


def filter_ps(output, pids):
    """ps output reduced to its header and the lines of ``pids``."""
    lines = output.split("\n")
    header = lines[0].split()
    if "PID" not in header:
        raise SystemFailure("ps: couldn't find PID field in ps output")
    index = header.index("PID")
    wanted = set(pids)
    kept = [lines[0]]
    for line in lines[1:]:
        fields = line.split()
        if not fields:
            continue
        try:
            pid = int(fields[index])
        except (IndexError, ValueError):
            raise SystemFailure(f"ps: unable to parse pid in line {line!r}") from None
        if pid in wanted:
            kept.append(line)
    return "".join(line + "\n" for line in kept)


def run_ps(ps_args):
    import subprocess

    argv = ["ps", *ps_args]
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    except FileNotFoundError:
        raise NotFound("ps: the ps program is not installed on this host") from None
    output = proc.stdout.decode(errors="replace")
    if proc.returncode != 0:
        raise SystemFailure(f"{' '.join(argv)}: exit status {proc.returncode}: "
                            f"{output.strip()}")
    return output


def main(g, verb, argv):
    opts, args = _args.parse(argv, FLAGS)
    args = need_id(verb, args)
    fmt = opts["format"]
    if fmt not in ("table", "json"):
        raise InvalidArgument(f"invalid format option {fmt!r}: use table or json")
    pids = container_pids(g.root, args[0])
    if fmt == "json":
        from berth.spec import jsonio
        sys.stdout.write(jsonio.dumps(list(pids)) + "\n")
        return 0
    sys.stdout.write(filter_ps(run_ps(args[1:] or ["-ef"]), pids))
    return 0
