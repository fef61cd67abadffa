"""`berth network create|ls|inspect|rm|prune|connect|disconnect` and `berth port`: parsing
and printing; the work is berth.engine.networks' (through the container service)."""


from berth.cli import output
from berth.cli.args import filters as args_filters
from berth.cli.args import key_values
from berth.errors import BerthError
from berth.flags import Flag, UsageError, parse


def _containers(ctx):
    from berth.cli.containers import _service

    return _service(ctx)


def _fail(ctx, err):
    ctx.stderr.write(f"Error response from daemon: {err}\n")
    return 1


def create(ctx, argv):
    opts, args = parse(argv, [
        Flag("driver", "d", kind="string", default="bridge"),
        Flag("subnet", kind="list"), Flag("gateway", kind="list"),
        Flag("ip-range", kind="list"), Flag("internal"), Flag("label", kind="list"),
        Flag("opt", "o", kind="list"), Flag("attachable"), Flag("ipv6"),
        Flag("ipam-driver", kind="string"), Flag("scope", kind="string")])
    if len(args) != 1:
        raise UsageError('"network create" requires exactly 1 argument.')
    for flag in ("subnet", "gateway", "ip_range"):
        if len(opts[flag]) > 1:
            return _fail(ctx, "berth supports one IPv4 subnet per network")
    if opts["ipv6"]:
        return _fail(ctx, "IPv6 networks are not supported")
    svc = _containers(ctx)
    try:
        svc.reconcile()
        rec = svc.networks.create(
            args[0], driver=opts["driver"], subnet=(opts["subnet"] or [""])[0],
            gateway=(opts["gateway"] or [""])[0], ip_range=(opts["ip_range"] or [""])[0],
            internal=opts["internal"], labels=key_values(opts["label"], "label"),
            options=key_values(opts["opt"], "opt"))
    except BerthError as err:
        return _fail(ctx, err)
    ctx.out(rec.id)
    return 0


def ls(ctx, argv):
    opts, args = parse(argv, [Flag("quiet", "q"), Flag("filter", "f", kind="list"),
                              Flag("format", kind="string"), Flag("no-trunc")])
    if args:
        raise UsageError('"network ls" accepts no arguments.')
    svc = _containers(ctx)
    svc.reconcile()
    filters = args_filters(opts["filter"])
    rows = []
    for net in sorted(svc.networks.list(), key=lambda n: n.name):
        if not _match(net, filters):
            continue
        rows.append({"ID": net.id if opts["no_trunc"] else net.id[:12], "Name": net.name,
                     "Driver": net.driver, "Scope": "local", "IPv6": "false",
                     "Internal": str(net.internal).lower(), "CreatedAt": net.created,
                     "Labels": ",".join(f"{k}={v}" for k, v in sorted(net.labels.items()))})
    if opts["quiet"]:
        for r in rows:
            ctx.out(r["ID"])
        return 0
    template = opts["format"] or "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
    try:
        text = output.render(template, rows, {"ID": "NETWORK ID"})
    except output.TemplateError as err:
        raise UsageError(str(err)) from None
    if text:
        ctx.out(text)
    return 0


def _match(net, filters):
    for key, values in filters.items():
        if key == "name" and not any(v in net.name for v in values):
            return False
        if key == "id" and not any(net.id.startswith(v) for v in values):
            return False
        if key == "driver" and net.driver not in values:
            return False
        if key == "type":
            kind = "builtin" if net.name in ("bridge", "host", "none") else "custom"
            if kind not in values:
                return False
        if key == "label":
            for v in values:
                k, eq, val = v.partition("=")
                if k not in net.labels or (eq and net.labels[k] != val):
                    return False
    return True


def inspect(ctx, argv):
    opts, args = parse(argv, [Flag("format", "f", kind="string"), Flag("verbose", "v")])
    if not args:
        raise UsageError('"network inspect" requires at least 1 argument.')
    svc = _containers(ctx)
    found, code = [], 0
    for ref in args:
        try:
            found.append(svc.networks.inspect(svc.networks.get(ref)))
        except BerthError as err:
            ctx.stderr.write(f"Error response from daemon: {err}\n")
            code = 1
    output.print_inspected(ctx, opts["format"], found, failed=bool(code))
    return code


def rm(ctx, argv):
    opts, args = parse(argv, [Flag("force", "f")])
    if not args:
        raise UsageError('"network rm" requires at least 1 argument.')
    svc = _containers(ctx)
    svc.reconcile()
    code = 0
    for ref in args:
        try:
            svc.networks.remove(ref)
            ctx.out(ref)
        except BerthError as err:
            if opts["force"] and "not found" in str(err):
                continue
            code = _fail(ctx, err)
    return code


def prune(ctx, argv):
    opts, args = parse(argv, [Flag("force", "f"), Flag("filter", kind="list")])
    if args:
        raise UsageError('"network prune" accepts no arguments.')
    if not opts["force"]:
        import sys
        ctx.stdout.write("WARNING! This will remove all custom networks not used by at least "
                         "one container.\nAre you sure you want to continue? [y/N] ")
        ctx.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    svc = _containers(ctx)
    svc.reconcile()
    removed = svc.networks.prune()
    if removed:
        ctx.out("Deleted Networks:\n" + "\n".join(removed))
    return 0


def connect(ctx, argv):
    opts, args = parse(argv, [Flag("alias", kind="list"), Flag("ip", kind="string"),
                              Flag("ip6", kind="string"), Flag("link", kind="list"),
                              Flag("driver-opt", kind="list")])
    if len(args) != 2:
        raise UsageError('"network connect" requires exactly 2 arguments.')
    try:
        _containers(ctx).connect(args[1], args[0], aliases=opts["alias"], ip=opts["ip"])
    except BerthError as err:
        return _fail(ctx, err)
    return 0


def disconnect(ctx, argv):
    opts, args = parse(argv, [Flag("force", "f")])
    if len(args) != 2:
        raise UsageError('"network disconnect" requires exactly 2 arguments.')
    try:
        _containers(ctx).disconnect(args[1], args[0], force=opts["force"])
    except BerthError as err:
        return _fail(ctx, err)
    return 0


def port(ctx, argv):
    _, args = parse(argv, [])
    if not args or len(args) > 2:
        raise UsageError('"port" requires at least 1 and at most 2 arguments.')
    svc = _containers(ctx)
    try:
        ports = svc.ports(args[0])
    except BerthError as err:
        return _fail(ctx, err)
    want = None
    if len(args) == 2:
        number, _, proto = args[1].partition("/")
        want = f"{number}/{proto or 'tcp'}"
    lines = []
    for key, binds in sorted(ports.items(), key=lambda kv: (int(kv[0].split("/")[0]),
                                                             kv[0])):
        if want and key != want:
            continue
        for b in binds or ():
            where = f"{b['HostIp'] or '0.0.0.0'}:{b['HostPort']}"
            lines.append(where if want else f"{key} -> {where}")
    if want and not lines:
        return _fail(ctx, f"No public port '{want}' published for {args[0]}")
    if lines:
        ctx.out("\n".join(lines))
    return 0
