"""Device rules as a cgroup v2 eBPF program (BPF_PROG_TYPE_CGROUP_DEVICE), built as bytes.

The kernel calls the program with struct bpf_cgroup_dev_ctx {u32 access_type; u32 major;
u32 minor}, access_type = access << 16 | type (type: 1 block, 2 char; access: 1 mknod,
2 read, 4 write) and allows the access when it returns 1. The rules are checked last to
first and the first match decides, so a later rule overrides an earlier one as on v1;
nothing matching means deny. An allow rule matches when every requested access is in the
rule's; a deny rule matches when any requested access is.
"""

import struct

from berth.errors import InvalidArgument

_TYPES = {"b": 1, "c": 2}
_ACCESS = {"m": 1, "r": 2, "w": 4}

# eBPF opcodes used here
_LDXW = 0x61     # dst = *(u32 *)(src + off)
_AND_K = 0x57    # dst &= imm (64-bit)
_RSH_K = 0x77    # dst >>= imm
_MOV_K = 0xb7    # dst = imm
_MOV_X = 0xbf    # dst = src
_JNE_K = 0x55    # if dst != imm: pc += off
_JEQ_K = 0x15    # if dst == imm: pc += off
_EXIT = 0x95


def _insn(op, dst=0, src=0, off=0, imm=0):
    return struct.pack("<BBhi", op, (src << 4) | dst, off, imm)


def access_mask(access, field="access"):
    mask = 0
    for ch in access or "rwm":
        if ch not in _ACCESS:
            raise InvalidArgument(f"{field}: unknown device access {ch!r} (want r, w, m)")
        mask |= _ACCESS[ch]
    return mask


def program(rules, field="linux.resources.devices"):
    """The eBPF instructions (bytes) enforcing ``rules`` (DeviceRule records, in order)."""
    # r2 = type, r3 = access, r4 = major, r5 = minor
    out = [_insn(_LDXW, 2, 1, 0), _insn(_AND_K, 2, imm=0xFFFF),
           _insn(_LDXW, 3, 1, 0), _insn(_RSH_K, 3, imm=16),
           _insn(_LDXW, 4, 1, 4), _insn(_LDXW, 5, 1, 8)]
    for index in range(len(rules) - 1, -1, -1):
        block, matches_all = _block(rules[index], f"{field}[{index}]")
        out.extend(block)
        if matches_all:
            # The verifier refuses unreachable code: nothing may follow a rule for everything.
            return b"".join(out)
    out.extend([_insn(_MOV_K, 0, imm=0), _insn(_EXIT)])
    return b"".join(out)


def _block(rule, field):
    kind = rule.type or "a"
    if kind != "a" and kind not in _TYPES:
        raise InvalidArgument(f"{field}.type: unknown device type {kind!r} (want a, b or c)")
    mask = access_mask(rule.access, f"{field}.access")
    tests = []  # (instructions before the jump, jump opcode, register, immediate)
    if kind != "a":
        tests.append(([], _JNE_K, 2, _TYPES[kind]))
    if mask != 7:
        if rule.allow:
            # requested & ~allowed must be 0
            tests.append(([_insn(_MOV_X, 6, 3), _insn(_AND_K, 6, imm=~mask & 7)],
                          _JNE_K, 6, 0))
        else:
            # requested & denied must not be 0
            tests.append(([_insn(_MOV_X, 6, 3), _insn(_AND_K, 6, imm=mask)], _JEQ_K, 6, 0))
    if rule.major is not None and rule.major >= 0:
        tests.append(([], _JNE_K, 4, rule.major))
    if rule.minor is not None and rule.minor >= 0:
        tests.append(([], _JNE_K, 5, rule.minor))
    tail = [_insn(_MOV_K, 0, imm=1 if rule.allow else 0), _insn(_EXIT)]
    # Each failed test jumps past the rest of the block, to the next rule.
    out = []
    remaining = sum(len(pre) + 1 for pre, _op, _r, _i in tests) + len(tail)
    for pre, op, reg, imm in tests:
        out.extend(pre)
        remaining -= len(pre) + 1
        out.append(_insn(op, reg, off=remaining, imm=imm))
    return out + tail, not tests
