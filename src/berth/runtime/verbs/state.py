"""`berth-oci state ID`: print the container's OCI state as JSON."""

import sys

from berth.runtime.main import need_id
from berth.runtime.state import Container
from berth.spec import jsonio

USAGE = "usage: berth-oci state ID\n"


def main(g, verb, argv):
    container_id = need_id(verb, argv)[0]
    c = Container.load(g.root, container_id)
    sys.stdout.write(jsonio.pretty(c.oci_state()) + "\n")
    return 0
