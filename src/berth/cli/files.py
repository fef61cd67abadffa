"""`berth cp`, `berth diff` and `berth commit`: parsing and printing; the work is
berth.engine.copy's and berth.engine.commit's."""

import sys

from berth.errors import BerthError
from berth.flags import Flag, UsageError, parse


def _containers(ctx):
    from berth.cli.containers import _service

    return _service(ctx)


def cp(ctx, argv):
    opts, args = parse(argv, [Flag("archive", "a"), Flag("follow-link", "L"),
                              Flag("quiet", "q")])
    if len(args) != 2:
        raise UsageError('"cp" requires exactly 2 arguments.')
    from berth.engine import copy

    src_ctr, src = copy.split_target(args[0])
    dst_ctr, dst = copy.split_target(args[1])
    if src_ctr and dst_ctr:
        raise UsageError("copying between containers is not supported")
    if not src_ctr and not dst_ctr:
        raise UsageError("must specify at least one container source")
    if (src_ctr and not src) or (dst_ctr and not dst):
        raise UsageError("path cannot be empty")
    svc = _containers(ctx)
    try:
        _copy(ctx, copy, svc, opts, src_ctr, src, dst_ctr, dst)
    except BerthError as err:
        ctx.stderr.write(f"Error response from daemon: {err}\n")
        return 1
    return 0


def _copy(ctx, copy, svc, opts, src_ctr, src, dst_ctr, dst):
    if src_ctr:
        if dst == "-" and ctx.stdout.isatty():
            raise UsageError("cowardly refusing to write a tar archive to a terminal")
        copy.copy_from_container(svc, src_ctr, src, dst, follow=opts["follow_link"],
                                 archive=opts["archive"], out=sys.stdout.buffer)
    else:
        copy.copy_to_container(svc, dst_ctr, src, dst, follow=opts["follow_link"],
                               archive=opts["archive"], stdin=sys.stdin.buffer)


def diff(ctx, argv):
    _, args = parse(argv, [])
    if len(args) != 1:
        raise UsageError('"diff" requires exactly 1 argument.')
    from berth.engine.commit import diff as changes

    for kind, path in changes(_containers(ctx), args[0]):
        ctx.out(f"{kind} {path}")
    return 0


def commit(ctx, argv):
    opts, args = parse(argv, [Flag("author", "a", kind="string"),
                              Flag("message", "m", kind="string"),
                              Flag("change", "c", kind="list"),
                              Flag("pause", "p", default=True)])
    if not 1 <= len(args) <= 2:
        raise UsageError('"commit" requires at least 1 and at most 2 arguments.')
    from berth.engine.commit import commit as make

    image_id = make(_containers(ctx), args[0], args[1] if len(args) > 1 else None,
                    changes=opts["change"], message=opts["message"] or "",
                    author=opts["author"] or "", pause=opts["pause"])
    ctx.out(image_id)
    return 0
