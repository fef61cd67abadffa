"""Running OCI hooks: the container's state on stdin, the hook's own args and env, a timeout.

A failing prestart, createRuntime, createContainer or startContainer hook fails the operation;
poststart and poststop failures are reported but do not undo anything (the spec's rules).
"""

import subprocess

from berth.errors import SystemFailure


def run(hooks, state_json, kind):
    for i, hook in enumerate(hooks):
        _run_one(hook, state_json, f"{kind}[{i}]")


def _run_one(hook, state_json, where):
    args = list(hook.args) or [hook.path]
    env = {}
    for item in hook.env:
        key, _, value = item.partition("=")
        env[key] = value
    try:
        proc = subprocess.Popen(args, executable=hook.path, env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                close_fds=True, cwd="/")
    except OSError as err:
        raise SystemFailure(f"hook {where} ({hook.path}): {err.strerror}") from None
    try:
        out, err_out = proc.communicate(state_json, timeout=hook.timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise SystemFailure(f"hook {where} ({hook.path}): timed out after {hook.timeout}s")
    if proc.returncode != 0:
        detail = (err_out or out).decode(errors="replace").strip().splitlines()
        why = f": {detail[-1]}" if detail else ""
        status = (f"killed by signal {-proc.returncode}" if proc.returncode < 0
                  else f"exit status {proc.returncode}")
        raise SystemFailure(f"hook {where} ({hook.path}) failed with {status}{why}")


def run_reporting(hooks, state_json, kind, log):
    """Run hooks whose failure must not stop the operation; report through ``log``."""
    for i, hook in enumerate(hooks):
        try:
            _run_one(hook, state_json, f"{kind}[{i}]")
        except SystemFailure as err:
            log(str(err))
