"""Image commands: pull, push, images, tag, rmi, inspect, history, save, load, import,
login, logout, image prune, system check, system prune. Parsing and printing only; the
work is berth.images.service's."""

import sys

from berth.cli import output
from berth.flags import Flag, UsageError, parse


def _progress(ctx, quiet=False):
    from berth.cli.progress import Progress, Quiet

    return Quiet() if quiet else Progress(ctx.stdout)


def _need(args, n, what, exact=False):
    if len(args) < n or (exact and len(args) != n):
        word = "exactly" if exact else "at least"
        raise UsageError(f'"{what}" requires {word} {n} argument{"s" if n != 1 else ""}.')


# ---------------------------------------------------------------- pull / push

def pull(ctx, argv):
    opts, args = parse(argv, [Flag("platform", kind="string"), Flag("quiet", "q"),
                              Flag("all-tags", "a"),
                              Flag("disable-content-trust", default=True)])
    _need(args, 1, "pull", exact=True)
    from berth.images import reference
    from berth.images.pull import pull as do_pull

    ref = reference.parse(args[0])
    progress = _progress(ctx, opts["quiet"])
    if "@" not in args[0] and ":" not in args[0].rsplit("/", 1)[-1]:
        progress.message("Using default tag: latest")
    image = do_pull(ctx.images(), str(ref), platform=opts["platform"] or None,
                    progress=progress)
    if not opts["quiet"]:
        progress.message(f"Digest: {image.target['digest']}")
        progress.message(f"Status: {image.status} for {ref.familiar_string()}")
    ctx.out(str(ref))
    return 0


def push(ctx, argv):
    opts, args = parse(argv, [Flag("quiet", "q"), Flag("all-tags", "a"),
                              Flag("disable-content-trust", default=True)])
    _need(args, 1, "push", exact=True)
    from berth.images.push import push as do_push

    progress = _progress(ctx, opts["quiet"])
    result = do_push(ctx.images(), args[0], progress=progress)
    ctx.out(f"{result['tag']}: digest: {result['digest']} size: {result['size']}")
    return 0


# ---------------------------------------------------------------- listing

def images(ctx, argv):
    opts, args = parse(argv, [Flag("all", "a"), Flag("quiet", "q"), Flag("digests"),
                              Flag("no-trunc"), Flag("filter", "f", kind="list"),
                              Flag("format", kind="string")])
    svc = ctx.images()
    rows = _image_rows(svc, args[0] if args else None, opts["filter"], opts["no_trunc"])
    if opts["quiet"]:
        seen = []
        for r in rows:
            if r["ID"] not in seen:
                seen.append(r["ID"])
        for i in seen:
            ctx.out(i)
        return 0
    if opts["format"]:
        try:
            ctx.out(output.render(opts["format"], rows, {"ID": "IMAGE ID",
                                                         "CreatedSince": "CREATED",
                                                         "CreatedAt": "CREATED AT"}))
        except output.TemplateError as err:
            raise UsageError(str(err)) from None
        return 0
    headers = ["REPOSITORY", "TAG"] + (["DIGEST"] if opts["digests"] else []) + [
        "IMAGE ID", "CREATED", "SIZE"]
    table = []
    for r in rows:
        line = [r["Repository"], r["Tag"]]
        if opts["digests"]:
            line.append(r["Digest"])
        line += [r["ID"], r["CreatedSince"], r["Size"]]
        table.append(line)
    ctx.out(output.table(headers, table))
    return 0


def _image_rows(svc, repo_filter, filters, no_trunc):
    from berth.images import reference
    from berth.images.archive import is_dangling

    wanted = _filters(filters)
    rows = []
    by_target = {}
    for rec in svc.records():
        by_target.setdefault(rec["target"]["digest"], []).append(rec)
    for digest, recs in by_target.items():
        try:
            image = svc.get(recs[0]["name"])
        except Exception:  # noqa: BLE001 - a broken record is listed by `system check`
            continue
        created = output.parse_time(image.config.get("created", ""))
        ident = image.id if no_trunc else image.id[7:19]
        labels = (image.config.get("config") or {}).get("Labels") or {}
        for rec in recs:
            name = rec["name"]
            if is_dangling(name):
                repo, tag = "<none>", "<none>"
            else:
                ref = reference.parse(name)
                repo = ref.familiar
                tag = ref.tag or "<none>"
            if repo_filter and not _matches_repo(repo_filter, repo, tag):
                continue
            if not _keep(wanted, image, repo, tag, labels, created):
                continue
            rows.append({"Repository": repo, "Tag": tag, "ID": ident,
                         "Digest": digest, "CreatedSince": output.ago(created) if created
                         else "N/A", "CreatedAt": image.config.get("created", ""),
                         "Size": output.human_size(image.size()), "_created": created})
    rows.sort(key=lambda r: -r["_created"])
    for r in rows:
        del r["_created"]
    return rows


def _matches_repo(pattern, repo, tag):
    import fnmatch

    name, _, want_tag = pattern.partition(":")
    if not fnmatch.fnmatch(repo, name):
        return False
    return not want_tag or fnmatch.fnmatch(tag, want_tag)


def _filters(filters):
    from berth.cli.args import filters as parse_filters

    return parse_filters(filters, ("dangling", "label", "before", "since", "reference"))


def _keep(wanted, image, repo, tag, labels, created):
    import fnmatch

    for value in wanted.get("dangling", []):
        dangling = tag == "<none>"
        if (value.lower() == "true") != dangling:
            return False
    for value in wanted.get("label", []):
        k, sep, v = value.partition("=")
        if k not in labels or (sep and labels[k] != v):
            return False
    for value in wanted.get("reference", []):
        if not _matches_repo(value, repo, tag) and not fnmatch.fnmatch(f"{repo}:{tag}", value):
            return False
    return True


def inspect(ctx, argv):
    opts, args = parse(argv, [Flag("format", "f", kind="string"),
                              Flag("type", kind="string")])
    _need(args, 1, "inspect")
    from berth.errors import BerthError

    kind = opts["type"]
    if kind not in ("", "image", "container"):
        raise UsageError(f'"{kind}" is not a valid value for --type')
    results = []
    failed = False
    for name in args:
        found = None
        # Docker looks for a container first, then an image.
        if kind in ("", "container"):
            try:
                from berth.cli.containers import _service
                found = _service(ctx).inspect(name)
            except BerthError:
                found = None
        if found is None and kind in ("", "image"):
            try:
                found = ctx.images().inspect(name)
            except BerthError:
                found = None
        if found is None:
            ctx.stderr.write(f"Error: No such object: {name}\n")
            failed = True
        else:
            results.append(found)
    output.print_inspected(ctx, opts["format"], results)
    return 1 if failed else 0


def history(ctx, argv):
    opts, args = parse(argv, [Flag("no-trunc"), Flag("quiet", "q"), Flag("human", "H",
                                                                          default=True),
                              Flag("format", kind="string")])
    _need(args, 1, "history", exact=True)
    rows = ctx.images().history(args[0])
    if opts["quiet"]:
        for r in rows:
            ctx.out(r["Id"] if opts["no_trunc"] or r["Id"] == "<missing>" else r["Id"][7:19])
        return 0
    table = []
    for r in rows:
        ident = r["Id"] if opts["no_trunc"] or r["Id"] == "<missing>" else r["Id"][7:19]
        created = output.parse_time(r["Created"])
        by = r["CreatedBy"]
        if not opts["no_trunc"] and len(by) > 45:
            by = by[:44] + "…"
        table.append([ident, output.ago(created) if created else "N/A", by,
                      output.human_size(r["Size"]), r["Comment"]])
    ctx.out(output.table(["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], table))
    return 0


# ---------------------------------------------------------------- names

def tag(ctx, argv):
    _, args = parse(argv, [])
    _need(args, 2, "tag", exact=True)
    ctx.images().tag(args[0], args[1])
    return 0


def rmi(ctx, argv):
    opts, args = parse(argv, [Flag("force", "f"), Flag("no-prune")])
    _need(args, 1, "rmi")
    svc = ctx.images()
    code = 0
    from berth.errors import BerthError
    for name in args:
        try:
            for line in svc.remove(name, force=opts["force"], prune=not opts["no_prune"]):
                ctx.out(line)
        except BerthError as err:
            ctx.stderr.write(f"Error: {err}\n")
            code = 1
    return code


def prune(ctx, argv):
    opts, _ = parse(argv, [Flag("all", "a"), Flag("force", "f"),
                           Flag("filter", kind="list")])
    if not opts["force"] and sys.stdin.isatty():
        ctx.out("WARNING! This will remove all dangling images.\n"
                "Are you sure you want to continue? [y/N] ")
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    result = ctx.images().prune(all_images=opts["all"])
    for line in result["lines"]:
        ctx.out(line)
    ctx.out(f"Total reclaimed space: {output.human_size(result['bytes'])}")
    return 0


def system_prune(ctx, argv):
    opts, _ = parse(argv, [Flag("all", "a"), Flag("force", "f"), Flag("volumes")])
    result = ctx.images().prune(all_images=opts["all"])
    for line in result["lines"]:
        ctx.out(line)
    ctx.out(f"Total reclaimed space: {output.human_size(result['bytes'])}")
    return 0


def system_check(ctx, argv):
    parse(argv, [])
    from berth.cli.events import system_check_containers

    problems = ctx.images().check() + system_check_containers(ctx)
    for p in problems:
        ctx.out(p)
    if problems:
        ctx.stderr.write(f"Error: {len(problems)} problem(s) found\n")
        return 1
    ctx.out("no problems found")
    return 0


# ---------------------------------------------------------------- archives

def save(ctx, argv):
    opts, args = parse(argv, [Flag("output", "o", kind="string"),
                              Flag("format", kind="string", default="docker-archive"),
                              Flag("platform", kind="string")])
    _need(args, 1, "save")
    from berth.images.archive import save as do_save

    if not opts["output"] and ctx.stdout.isatty():
        raise UsageError("cowardly refusing to save to a terminal. Use the -o flag or "
                         "redirect")
    if opts["output"]:
        with open(opts["output"], "wb") as f:
            do_save(ctx.images(), args, f, fmt=opts["format"])
    else:
        do_save(ctx.images(), args, ctx.stdout.buffer, fmt=opts["format"])
    return 0


def load(ctx, argv):
    opts, args = parse(argv, [Flag("input", "i", kind="string"), Flag("quiet", "q"),
                              Flag("platform", kind="string")])
    from berth.images.archive import load as do_load

    if opts["input"]:
        with open(opts["input"], "rb") as f:
            names = do_load(ctx.images(), f)
    else:
        if sys.stdin.isatty():
            raise UsageError("requested load from stdin, but stdin is empty")
        names = do_load(ctx.images(), sys.stdin.buffer)
    for n in names:
        ctx.out(f"Loaded image: {n}" if not n.startswith("sha256:") else
                f"Loaded image ID: {n}")
    return 0


def import_(ctx, argv):
    opts, args = parse(argv, [Flag("change", "c", kind="list"),
                              Flag("message", "m", kind="string"),
                              Flag("platform", kind="string")])
    _need(args, 1, "import")
    from berth.images.archive import import_rootfs

    source = args[0]
    target = args[1] if len(args) > 1 else None
    if source == "-":
        image_id = import_rootfs(ctx.images(), sys.stdin.buffer, target, opts["change"],
                                 opts["message"])
    else:
        with open(source, "rb") as f:
            image_id = import_rootfs(ctx.images(), f, target, opts["change"],
                                     opts["message"])
    ctx.out(image_id)
    return 0


# ---------------------------------------------------------------- credentials

def login(ctx, argv):
    opts, args = parse(argv, [Flag("username", "u", kind="string"),
                              Flag("password", "p", kind="string"),
                              Flag("password-stdin")])
    from berth.registry import credentials

    server = args[0] if args else "docker.io"
    password = opts["password"]
    if opts["password_stdin"]:
        password = sys.stdin.readline().rstrip("\n")
    if not opts["username"] or password is None or password == "":
        raise UsageError("Must provide --username and --password (or --password-stdin)")
    credentials.login(server, opts["username"], password)
    ctx.out("Login Succeeded")
    return 0


def logout(ctx, argv):
    _, args = parse(argv, [])
    from berth.registry import credentials

    server = args[0] if args else "docker.io"
    credentials.logout(server)
    ctx.out(f"Removing login credentials for {server}")
    return 0
