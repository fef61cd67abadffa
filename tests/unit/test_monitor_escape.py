"""Detach keys: the attach client's escape scan and --detach-keys' grammar."""
import pytest

from berth.cli.containers import detach_keys
from berth.engine.monitor import _escape
from berth.errors import InvalidArgument

KEYS = b"\x10\x11"


@pytest.mark.parametrize("buf, result", [
    (b"ls\r", (b"ls\r", b"", False)),
    (b"ls\x10\x11rest", (b"ls", b"", True)),
    (b"ls\x10", (b"ls", b"\x10", False)),        # held: the next key decides
    (b"\x10x", (b"\x10x", b"", False)),           # not the sequence: sent as typed
    (b"\x10\x10\x11", (b"\x10", b"", True)),
])
def test_escape_scan(buf, result):
    assert _escape(buf, KEYS) == result


def test_detach_keys_grammar():
    assert detach_keys("") == KEYS
    assert detach_keys("ctrl-a,x,ctrl-@,ctrl-_") == b"\x01x\x00\x1f"
    assert detach_keys("ctrl-Z") == b"\x1a"
    for bad in ("ctrl-", "ctrl-1", "ab", "ctrl-p,,"):
        with pytest.raises(InvalidArgument, match="Invalid detach keys"):
            detach_keys(bad)
