"""berth.cgroups.devices: the v2 device filter, run on a small eBPF interpreter."""

import struct

import pytest

from berth.cgroups import devices
from berth.errors import InvalidArgument
from berth.spec.runtime import DeviceRule

BLOCK, CHAR = 1, 2
M, R, W = 1, 2, 4


def run(code, kind, major, minor, access):
    """Interpret the opcodes devices.program emits; returns r0."""
    ctx = struct.pack("<III", access << 16 | kind, major, minor)
    regs = [0] * 11
    pc = 0
    insns = [struct.unpack("<BBhi", code[i:i + 8]) for i in range(0, len(code), 8)]
    for _step in range(1000):
        op, regbyte, off, imm = insns[pc]
        dst, src = regbyte & 0xF, regbyte >> 4
        pc += 1
        if op == 0x61:
            regs[dst] = struct.unpack_from("<I", ctx, regs[src] + off)[0]
        elif op == 0x57:
            regs[dst] &= imm & 0xFFFFFFFFFFFFFFFF
        elif op == 0x77:
            regs[dst] >>= imm
        elif op == 0xb7:
            regs[dst] = imm
        elif op == 0xbf:
            regs[dst] = regs[src]
        elif op == 0x55:
            if regs[dst] != imm:
                pc += off
        elif op == 0x15:
            if regs[dst] == imm:
                pc += off
        elif op == 0x95:
            return regs[0]
        else:
            raise AssertionError(f"unexpected opcode {op:#x}")
    raise AssertionError("program did not exit")


def rules(*specs):
    return [DeviceRule.from_json(s, "r") for s in specs]


DEFAULT = rules(
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},   # /dev/null
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "r"},     # /dev/zero, read
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},              # pts
    {"allow": True, "type": "b", "major": 8, "minor": 0, "access": "rw"},
    {"allow": False, "type": "b", "major": 8, "minor": 0, "access": "w"},     # later deny wins
)


@pytest.mark.parametrize("kind, major, minor, access, allowed", [
    (CHAR, 1, 3, R | W, 1),
    (CHAR, 1, 3, M, 1),
    (CHAR, 1, 5, R, 1),
    (CHAR, 1, 5, W, 0),
    (CHAR, 1, 5, R | W, 0),
    (CHAR, 136, 7, R | W, 1),
    (BLOCK, 136, 7, R, 0),
    (BLOCK, 8, 0, R, 1),
    (BLOCK, 8, 0, W, 0),
    (BLOCK, 8, 0, R | W, 0),
    (CHAR, 10, 200, R, 0),
])
def test_default_rules(kind, major, minor, access, allowed):
    assert run(devices.program(DEFAULT), kind, major, minor, access) == allowed


def test_allow_all_then_deny_one():
    code = devices.program(rules({"allow": True}, {"allow": False, "type": "c", "major": 1,
                                                   "minor": 3}))
    assert run(code, CHAR, 1, 3, R) == 0
    assert run(code, CHAR, 1, 5, R) == 1
    assert run(code, BLOCK, 8, 0, W) == 1


def test_no_rules_denies_everything():
    assert run(devices.program([]), CHAR, 1, 3, R) == 0


def test_bad_rules_name_the_field():
    with pytest.raises(InvalidArgument, match=r"linux.resources.devices\[0\].type: unknown"):
        devices.program(rules({"allow": True, "type": "x"}))
    with pytest.raises(InvalidArgument, match=r"linux.resources.devices\[1\].access"):
        devices.program(rules({"allow": True}, {"allow": True, "access": "rq"}))


def test_nothing_follows_a_rule_for_everything():
    # the kernel's verifier refuses unreachable instructions
    code = devices.program(rules({"allow": False, "type": "c", "major": 1}, {"allow": True}))
    assert code[-16:] == struct.pack("<BBhi", 0xb7, 0, 0, 1) + struct.pack("<BBhi", 0x95, 0, 0, 0)
    assert len(code) == 8 * 8
