"""`berth volume create|ls|inspect|rm|prune` and `berth system df`: parsing and printing;
the work is berth.engine.volumes' (and the image and container services')."""


from berth.cli import output
from berth.cli.args import filters, key_values
from berth.errors import BerthError
from berth.flags import Flag, UsageError, parse


def _service(ctx):
    from berth.cli.containers import _service as containers

    return containers(ctx).volumes


def create(ctx, argv):
    opts, args = parse(argv, [Flag("driver", "d", kind="string", default="local"),
                              Flag("name", kind="string"), Flag("label", kind="list"),
                              Flag("opt", "o", kind="list")])
    if len(args) > 1:
        raise UsageError('"volume create" requires at most 1 argument.')
    name = opts["name"]
    if args:
        if name and name != args[0]:
            raise UsageError("conflicting options: either specify --name or provide "
                             "positional arg, not both")
        name = args[0]
    try:
        rec = _service(ctx).create(name, opts["driver"], key_values(opts["label"], "label"),
                                   key_values(opts["opt"], "opt"))
    except BerthError as err:
        ctx.stderr.write(f"Error response from daemon: {err}\n")
        return 1
    ctx.out(rec["Name"])
    return 0


def _row(rec, users):
    labels = rec.get("Labels") or {}
    return {"Name": rec["Name"], "Driver": rec["Driver"], "Scope": rec["Scope"],
            "Mountpoint": rec["Mountpoint"], "CreatedAt": rec["CreatedAt"],
            "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
            "Links": str(len(users.get(rec["Name"], ()))), "Size": "N/A"}


def ls(ctx, argv):
    opts, args = parse(argv, [Flag("quiet", "q"), Flag("filter", "f", kind="list"),
                              Flag("format", kind="string"), Flag("cluster")])
    if args:
        raise UsageError('"volume ls" accepts no arguments.')
    from berth.engine.volumes import match

    svc = _service(ctx)
    users = svc.users()
    wanted = filters(opts["filter"], lower=True)
    rows = [_row(r, users) for r in svc.list() if match(r, wanted, users)]
    if opts["quiet"]:
        for r in rows:
            ctx.out(r["Name"])
        return 0
    template = opts["format"] or "table {{.Driver}}\t{{.Name}}"
    try:
        text = output.render(template, rows, {"Name": "VOLUME NAME"})
    except output.TemplateError as err:
        raise UsageError(str(err)) from None
    if text:
        ctx.out(text)
    return 0


def inspect(ctx, argv):
    opts, args = parse(argv, [Flag("format", "f", kind="string")])
    if not args:
        raise UsageError('"volume inspect" requires at least 1 argument.')
    svc = _service(ctx)
    found, code = [], 0
    for name in args:
        try:
            found.append(svc.get(name))
        except BerthError as err:
            ctx.stderr.write(f"Error response from daemon: {err}\n")
            code = 1
    output.print_inspected(ctx, opts["format"], found, failed=bool(code))
    return code


def rm(ctx, argv):
    opts, args = parse(argv, [Flag("force", "f")])
    if not args:
        raise UsageError('"volume rm" requires at least 1 argument.')
    svc = _service(ctx)
    code = 0
    for name in args:
        try:
            svc.remove(name, force=opts["force"])
            ctx.out(name)
        except BerthError as err:
            ctx.stderr.write(f"Error response from daemon: {err}\n")
            code = 1
    return code


def prune(ctx, argv):
    opts, args = parse(argv, [Flag("force", "f"), Flag("all", "a"),
                              Flag("filter", kind="list")])
    if args:
        raise UsageError('"volume prune" accepts no arguments.')
    wanted = filters(opts["filter"], lower=True)
    if "all" in wanted:
        opts["all"] = wanted.pop("all")[-1].lower() in ("1", "true")
    if not opts["force"]:
        what = "all volumes" if opts["all"] else "all anonymous local volumes"
        ctx.stdout.write(f"WARNING! This will remove {what} not used by at least one "
                         f"container.\nAre you sure you want to continue? [y/N] ")
        ctx.stdout.flush()
        import sys
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            return 0
    removed, freed = _service(ctx).prune(all_volumes=opts["all"], filters=wanted)
    if removed:
        ctx.out("Deleted Volumes:")
        for name in removed:
            ctx.out(name)
        ctx.out("")
    ctx.out(f"Total reclaimed space: {output.human_size(freed)}")
    return 0


# ---------------------------------------------------------------- system df

def system_df(ctx, argv):
    opts, args = parse(argv, [Flag("verbose", "v"), Flag("format", kind="string")])
    if args:
        raise UsageError('"system df" accepts no arguments.')
    from berth.engine.usage import disk_usage

    from berth.cli.containers import _service as containers
    du = disk_usage(containers(ctx))
    rows = []
    for kind, key in (("Images", "images"), ("Containers", "containers"),
                      ("Local Volumes", "volumes"), ("Build Cache", "build_cache")):
        s = du[key]
        pct = f" ({s['reclaimable'] * 100 // s['size']}%)" if s["size"] and \
            key != "build_cache" else (" (0%)" if key != "build_cache" else "")
        rows.append({"Type": kind, "TotalCount": str(s["total"]), "Active": str(s["active"]),
                     "Size": output.human_size(s["size"]),
                     "Reclaimable": output.human_size(s["reclaimable"]) + pct})
    if opts["format"] and not opts["verbose"]:
        try:
            ctx.out(output.render(opts["format"], rows,
                                  {"TotalCount": "TOTAL", "Type": "TYPE"}))
        except output.TemplateError as err:
            raise UsageError(str(err)) from None
        return 0
    if not opts["verbose"]:
        ctx.out(output.table(["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
                             [[r["Type"], r["TotalCount"], r["Active"], r["Size"],
                               r["Reclaimable"]] for r in rows]))
        return 0
    ctx.out("Images space usage:\n")
    ctx.out(output.table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE",
                          "SHARED SIZE", "UNIQUE SIZE", "CONTAINERS"],
                         [[i["repository"], i["tag"], i["id"][7:19], output.ago(i["created"]),
                           output.human_size(i["size"]), output.human_size(0),
                           output.human_size(i["size"]), str(i["containers"])]
                          for i in du["images"]["items"]]))
    ctx.out("\nContainers space usage:\n")
    ctx.out(output.table(["CONTAINER ID", "IMAGE", "COMMAND", "LOCAL VOLUMES", "SIZE",
                          "CREATED", "STATUS", "NAMES"],
                         [[c["id"][:12], c["image"], c["command"], str(c["volumes"]),
                           output.human_size(c["size"]), output.ago(c["created"]),
                           c["status"], c["name"]] for c in du["containers"]["items"]]))
    ctx.out("\nLocal Volumes space usage:\n")
    ctx.out(output.table(["VOLUME NAME", "LINKS", "SIZE"],
                         [[v["name"], str(v["links"]), output.human_size(v["size"])]
                          for v in du["volumes"]["items"]]))
    ctx.out("\nBuild cache usage: 0B")
    return 0
