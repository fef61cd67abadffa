"""`berth-oci features`: what this runtime supports, as the OCI features document."""

import sys

from berth.errors import InvalidArgument

USAGE = "usage: berth-oci features\n"


def main(g, verb, argv):
    if argv:
        raise InvalidArgument(f'"{verb}" requires exactly 0 argument(s)')
    from berth.spec import jsonio
    from berth.spec.features import features

    sys.stdout.write(jsonio.pretty(features(), indent="    ") + "\n")
    return 0
