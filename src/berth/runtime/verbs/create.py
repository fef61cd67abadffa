"""`berth-oci create [flags] ID`: make a container that waits for `start`."""

from berth.runtime import _args
from berth.runtime.main import need_id

USAGE = """usage: berth-oci create [--bundle DIR] [--console-socket PATH] [--pid-file PATH]
                        [--no-pivot] [--no-new-keyring] [--preserve-fds N] ID
"""

ENTRIES = (
    ("--bundle", "-b", "value", ""),
    ("--console-socket", None, "value", ""),
    ("--pid-file", None, "value", ""),
    ("--no-pivot", None, "bool", False),
    ("--no-new-keyring", None, "bool", False),
    ("--preserve-fds", None, "int", 0),
    ("--pidfd-socket", None, "value", ""),
)
FLAGS = _args.table(*ENTRIES)


def create_from(g, opts, container_id, foreground=False, start_now=False):
    from berth.runtime.create import create

    return create(g.root, container_id, opts["bundle"], pid_file=opts["pid-file"] or None,
                  console_socket=opts["console-socket"] or None, no_pivot=opts["no-pivot"],
                  no_new_keyring=opts["no-new-keyring"], preserve_fds=opts["preserve-fds"],
                  systemd_cgroup=g.systemd_cgroup, foreground=foreground,
                  start_now=start_now)


def main(g, verb, argv):
    opts, args = _args.parse(argv, FLAGS)
    container_id = need_id(verb, args)[0]
    create_from(g, opts, container_id)
    return 0
