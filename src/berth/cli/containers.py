"""Container commands: run, create, start, stop, restart, kill, rm, ps, logs, wait.
Parsing and printing; the work is berth.engine.containers'."""

import os
import sys
import time

from berth.cli import output
from berth.flags import Flag, UsageError, parse
from berth.errors import BerthError, InvalidArgument


def _service(ctx):
    if getattr(ctx, "_containers", None) is None:
        from berth.engine.containers import ContainerService
        ctx._containers = ContainerService(ctx.root, ctx.images())
    return ctx._containers


def _need(args, n, what):
    if len(args) < n:
        raise UsageError(f'"{what}" requires at least {n} argument{"s" if n != 1 else ""}.')


def _exit_code_for(err):
    """Docker's: 127 for a command that is not there, 126 for one that cannot run, else 125."""
    text = str(err)
    if "executable file not found" in text or "no such file or directory" in text.lower():
        return 127
    if "permission denied" in text.lower() or "is a directory" in text:
        return 126
    return 125


# ---------------------------------------------------------------- run / create / start

def run(ctx, argv):
    from berth.engine.runopts import parse_run_flags

    try:
        opts, image, command = parse_run_flags(argv)
    except BerthError as err:
        ctx.stderr.write(f"berth: {err}\nSee 'berth run --help'.\n")
        return 125
    svc = _service(ctx)
    progress = None if opts.quiet else _progress(ctx)
    try:
        record = svc.create(opts, image, command, progress=progress)
    except BerthError as err:
        ctx.stderr.write(f"berth: {err}\n")
        return 125
    cid = record["id"]
    try:
        if opts.detach:
            svc.start(cid, detached=True)
            ctx.out(cid)
            return 0
        svc.start(cid, detached=False)
        streams = opts.attach or ("stdin", "stdout", "stderr")
        stdin = sys.stdin if opts.interactive and "stdin" in streams else None
        out = sys.stdout.buffer if "stdout" in streams else None
        err = sys.stderr.buffer if "stderr" in streams else None
        code = _attach_with_terminal(svc, cid, stdin, out, err, opts.tty,
                                     keys=opts.detach_keys)
        if code == "detached":
            return 0  # it runs on, as after `run -d` (and --rm removes it when it exits)
        code = svc.wait(cid) if code is None else code
    except BerthError as err:
        ctx.stderr.write(f"berth: {err}\n")
        code = _exit_code_for(err)
        _remove_quietly(svc, cid)
        return code
    if opts.rm:
        _remove_quietly(svc, cid)
    return code


run.error_exit = 125
run.usage_exit = 125


def detach_keys(text):
    """Docker's --detach-keys: "ctrl-p,ctrl-q" (the default), "a,ctrl-@", ... as bytes."""
    keys = bytearray()
    for part in (text or "ctrl-p,ctrl-q").split(","):
        low = part.lower()
        if len(part) == 1:
            keys.append(ord(part))
        elif low.startswith("ctrl-") and len(low) == 6 and (
                "a" <= low[5] <= "z" or low[5] in "@[\\]^_"):
            keys.append(ord(low[5].upper()) - 64)
        else:
            raise InvalidArgument(f"Invalid detach keys ({text}) provided")
    return bytes(keys)


def _attach_with_terminal(svc, cid, stdin, stdout, stderr, tty, start=True, keys=""):
    """Attach; on a tty container with our stdin a terminal, in raw mode, the container's
    terminal sized as ours and resized with it (SIGWINCH), the detach keys (``keys``, or
    ctrl-p ctrl-q) ending the session: returns monitor.DETACHED then."""
    if tty and stdin is not None and os.isatty(0):
        escape = detach_keys(keys)
        import signal
        import termios
        import tty as ttymod

        def size():
            try:
                cols, rows = os.get_terminal_size(0)
            except OSError:
                return None
            return (rows, cols) if rows and cols else None

        def winch(signum, frame):
            now = size()
            if now:
                try:
                    svc.resize(cid, *now)
                except BerthError:
                    pass
        saved = termios.tcgetattr(0)
        ttymod.setraw(0, termios.TCSANOW)  # keeps what was typed ahead (TCSAFLUSH drops it)
        previous = signal.signal(signal.SIGWINCH, winch)
        try:
            return svc.attach(cid, stdin=stdin, stdout=stdout, stderr=stderr, start=start,
                              size=size(), detach_keys=escape)
        finally:
            signal.signal(signal.SIGWINCH, previous)
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
    return svc.attach(cid, stdin=stdin, stdout=stdout, stderr=stderr, start=start)


def _remove_quietly(svc, cid):
    try:
        svc.remove(cid, force=True)
    except BerthError:
        pass


def _progress(ctx):
    from berth.cli.progress import Progress

    return Progress(ctx.stderr)


def create(ctx, argv):
    from berth.engine.runopts import parse_run_flags

    opts, image, command = parse_run_flags(argv)
    record = _service(ctx).create(opts, image, command, progress=_progress(ctx))
    ctx.out(record["id"])
    return 0


create.error_exit = 125
create.usage_exit = 125


def start(ctx, argv):
    opts, args = parse(argv, [Flag("attach", "a"), Flag("interactive", "i"),
                              Flag("detach-keys", kind="string")])
    _need(args, 1, "start")
    if (opts["attach"] or opts["interactive"]) and len(args) > 1:
        ctx.stderr.write("you cannot start and attach multiple containers at once\n")
        return 1
    svc = _service(ctx)
    code = 0
    for name in args:
        try:
            if opts["attach"]:
                record = svc.start(name, detached=False)
                stdin = sys.stdin if opts["interactive"] else None
                code = _attach_with_terminal(svc, name, stdin, sys.stdout.buffer,
                                             sys.stderr.buffer, _tty(svc, record),
                                             keys=opts["detach_keys"])
                return 0 if code == "detached" else code
            svc.start(name)
            ctx.out(name)
        except BerthError as err:
            ctx.stderr.write(f"Error response from daemon: {err}\n")
            code = 1
    return code


# ---------------------------------------------------------------- stop / kill / rm / wait

def stop(ctx, argv):
    opts, args = parse(argv, [Flag("time", "t", kind="int", default=-1),
                              Flag("signal", "s", kind="string")])
    _need(args, 1, "stop")
    return _each(ctx, args, lambda svc, n: svc.stop(
        n, timeout=None if opts["time"] < 0 else opts["time"], signal=opts["signal"] or None))


def restart(ctx, argv):
    opts, args = parse(argv, [Flag("time", "t", kind="int", default=-1)])
    _need(args, 1, "restart")

    def again(svc, n):
        svc.stop(n, timeout=None if opts["time"] < 0 else opts["time"])
        svc.start(n)
    return _each(ctx, args, again)


def kill(ctx, argv):
    opts, args = parse(argv, [Flag("signal", "s", kind="string", default="KILL")])
    _need(args, 1, "kill")
    return _each(ctx, args, lambda svc, n: svc.kill(n, opts["signal"]))


def rm(ctx, argv):
    opts, args = parse(argv, [Flag("force", "f"), Flag("volumes", "v"), Flag("link", "l")])
    _need(args, 1, "rm")
    return _each(ctx, args, lambda svc, n: svc.remove(n, force=opts["force"],
                                                      volumes=opts["volumes"]))


def _each(ctx, args, fn):
    svc = _service(ctx)
    code = 0
    for name in args:
        try:
            fn(svc, name)
            ctx.out(name)
        except BerthError as err:
            ctx.stderr.write(f"Error response from daemon: {err}\n")
            code = 1
    return code


def wait(ctx, argv):
    _, args = parse(argv, [Flag("condition", kind="string")])
    _need(args, 1, "wait")
    svc = _service(ctx)
    code = 0
    for name in args:
        try:
            ctx.out(str(svc.wait(name)))
        except BerthError as err:
            ctx.stderr.write(f"Error response from daemon: {err}\n")
            code = 1
    return code


# ---------------------------------------------------------------- ps / logs

def ps(ctx, argv):
    opts, _ = parse(argv, [Flag("all", "a"), Flag("quiet", "q"), Flag("last", "n", kind="int",
                                                                       default=-1),
                           Flag("latest", "l"), Flag("size", "s"), Flag("no-trunc"),
                           Flag("filter", "f", kind="list"), Flag("format", kind="string")])
    filters = _ps_filters(opts["filter"])
    svc = _service(ctx)
    for key in ("before", "since"):  # by another container's creation
        if key in filters:
            filters[key] = [_created(svc.get(v)) for v in filters[key]]
    show_all = opts["all"] or opts["last"] >= 0 or opts["latest"]
    records = [r for r in svc.list(all_containers=show_all) if _ps_keep(r, filters)]
    if opts["latest"]:
        records = records[:1]
    elif opts["last"] >= 0:
        records = records[:opts["last"]]
    rows = [_ps_row(r, opts["no_trunc"], None if opts["quiet"] else svc) for r in records]
    if opts["quiet"]:
        for r in rows:
            ctx.out(r["ID"])
        return 0
    if opts["size"] or "{{.Size}}" in (opts["format"] or "").replace(" ", ""):
        for row, record in zip(rows, records):
            rw, virtual = svc.sizes(record)
            row["Size"] = (f"{output.human_size(rw)} "
                           f"(virtual {output.human_size(virtual)})")
    if opts["format"]:
        try:
            ctx.out(output.render(opts["format"], rows, {"ID": "CONTAINER ID",
                                                         "RunningFor": "CREATED"}))
        except output.TemplateError as err:
            raise UsageError(str(err)) from None
        return 0
    columns = ["ID", "Image", "Command", "RunningFor", "Status", "Ports", "Names"]
    columns += ["Size"] if opts["size"] else []
    ctx.out(output.table(["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS",
                          "NAMES"] + (["SIZE"] if opts["size"] else []),
                         [[r[c] for c in columns] for r in rows]))
    return 0


_PS_FILTERS = ("ancestor", "before", "expose", "exited", "health", "id", "isolation",
               "is-task", "label", "name", "network", "publish", "since", "status", "volume")
_STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


def _ps_filters(specs):
    """{key: [values]} from --filter words, checked as dockerd checks them."""
    filters = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not sep:
            raise InvalidArgument("bad format of filter (expected name=value)")
        if key not in _PS_FILTERS:
            raise InvalidArgument(f"invalid filter '{key}'")
        if key == "status" and value not in _STATUSES:
            raise InvalidArgument(f"Invalid filter 'status={value}'")
        if key == "exited" and not value.lstrip("-").isdigit():
            raise InvalidArgument(f"invalid filter 'exited={value}'")
        filters.setdefault(key, []).append(value)
    return filters


def _ps_match(record, key, value):
    state = record["state"]
    if key == "status":
        return state.get("Status") == value
    if key == "name":
        return value.lstrip("/") in record["name"]
    if key == "id":
        return record["id"].startswith(value)
    if key == "label":
        from berth.engine.containers import has_label
        return has_label(record["config"].get("Labels") or {}, value)
    if key == "exited":
        return not state.get("Running") and state.get("Status") == "exited" and \
            str(state.get("ExitCode")) == value
    if key == "ancestor":
        return value in (record["image"], record["image_id"]) or (
            len(value) >= 4 and record["image_id"].split(":")[-1].startswith(value))
    if key == "health":
        return health_status(record) == value
    if key == "before":
        return _created(record) < value
    if key == "since":
        return _created(record) > value
    if key == "network":
        mode = (record.get("host_config") or {}).get("NetworkMode") or ""
        nets = dict(record.get("networks") or {})
        if mode in ("host", "none"):
            nets[mode] = {"name": mode}
        return any(value == conf.get("name") or (value and net_id.startswith(value))
                   for net_id, conf in nets.items())
    if key == "volume":
        return any(value in (m.get("Name"), m.get("Source"), m.get("Destination"))
                   for m in record.get("mounts") or ())
    if key in ("publish", "expose"):
        conf = record["config"] if key == "expose" else record.get("host_config") or {}
        ports = conf.get("ExposedPorts" if key == "expose" else "PortBindings") or {}
        return _port_match(value, ports)
    if key == "is-task":
        return value == "false"
    return value in ("default", "")  # isolation: Linux has only the default


def _created(record):
    """The creation time as a UNIX time, for before= and since=."""
    return output.parse_time(record.get("created", ""))


def _port_match(value, ports):
    """Docker's publish/expose filter: "80", "80/udp" or a range "8000-8080[/tcp]"."""
    span, _, proto = value.partition("/")
    low, _, high = span.partition("-")
    try:
        low, high = int(low), int(high or low)
    except ValueError:
        return False
    for key in ports:
        port, _, kproto = key.partition("/")
        if port.isdigit() and low <= int(port) <= high and (kproto or "tcp") == (proto or "tcp"):
            return True
    return False


def _ps_keep(record, filters):
    """Every key holds; within a key, one of its values (as dockerd)."""
    return all(any(_ps_match(record, key, v) for v in values)
               for key, values in filters.items())


def ports_text(ports):
    """Docker's PORTS column from NetworkSettings.Ports: "0.0.0.0:8080->80/tcp, 443/tcp"."""
    parts = []
    for key, binds in sorted(ports.items(), key=lambda kv: (int(kv[0].split("/")[0]),
                                                             kv[0])):
        if not binds:
            parts.append(key)
        parts += [f"{b['HostIp'] or '0.0.0.0'}:{b['HostPort']}->{key}" for b in binds or ()]
    return ", ".join(parts)


def _ps_row(record, no_trunc, svc=None):
    conf = record["config"]
    command = " ".join(list(conf.get("Entrypoint") or []) + list(conf.get("Cmd") or []))
    if not no_trunc and len(command) > 20:
        command = command[:19] + "…"
    created = output.parse_time(record["created"])
    return {"ID": record["id"] if no_trunc else record["id"][:12],
            "Image": record["image"], "Command": f'"{command}"',
            "RunningFor": output.ago(created), "CreatedAt": record["created"],
            "Status": status_text(record["state"]),
            "Ports": ports_text(svc.ports_of(record)) if svc is not None and
            record["state"].get("Running") else "",
            "Names": record["name"], "State": record["state"].get("Status", ""),
            "Labels": ",".join(f"{k}={v}" for k, v in (conf.get("Labels") or {}).items())}


def status_text(state, now=None):
    """Docker's STATUS column: Up 3 seconds, Exited (0) 5 seconds ago, Created, ..."""
    now = time.time() if now is None else now
    status = state.get("Status", "created")
    if state.get("Running"):
        started = output.parse_time(state.get("StartedAt", ""))
        text = "Up " + (output.human_duration(now - started) if started else
                        "Less than a second")
        if state.get("Paused"):
            text += " (Paused)"
        health = (state.get("Health") or {}).get("Status")
        if health:
            text += " (health: starting)" if health == "starting" else f" ({health})"
        return text
    if state.get("Restarting"):
        return f"Restarting ({state.get('ExitCode', 0)})"
    if status == "created":
        return "Created"
    finished = output.parse_time(state.get("FinishedAt", ""))
    if status in ("exited", "dead") and finished:
        return f"Exited ({state.get('ExitCode', 0)}) {output.ago(finished, now)}"
    return status.capitalize()


def health_status(record):
    """`ps --filter health=`'s value: starting, healthy, unhealthy or none."""
    from berth.engine.health import probe_command

    if probe_command(record["config"].get("Healthcheck")) is None:
        return "none"
    return (record["state"].get("Health") or {}).get("Status") or "starting"


def logs(ctx, argv):
    opts, args = parse(argv, [Flag("follow", "f"), Flag("tail", "n", kind="string",
                                                        default="all"),
                              Flag("timestamps", "t"), Flag("since", kind="string"),
                              Flag("until", kind="string"), Flag("details")])
    _need(args, 1, "logs")
    from berth.engine.logs import parse_time

    tail = None if opts["tail"] in ("all", "") else int(opts["tail"])
    since = parse_time(opts["since"]) if opts["since"] else None
    until = parse_time(opts["until"]) if opts["until"] else None
    out, err = sys.stdout.buffer, sys.stderr.buffer
    svc = _service(ctx)
    details = _log_details(svc.get(args[0])) if opts["details"] else b""
    for entry in svc.logs(args[0], follow=opts["follow"], tail=tail, since=since,
                          until=until):
        data = entry.format(opts["timestamps"])
        if isinstance(data, str):
            data = data.encode()
        if opts["details"]:
            data = _with_details(data, details, opts["timestamps"])
        (err if entry.stream == "stderr" else out).write(data)
        (err if entry.stream == "stderr" else out).flush()
    return 0


def _log_details(record):
    """--details' prefix: the labels and env vars --log-opt labels=/env= name, as Docker's
    json-file keeps them ("k=v,k2=v2"), then a space."""
    conf = record["config"]
    opts = ((record.get("host_config") or {}).get("LogConfig") or {}).get("Config") or {}
    attrs = {}
    labels = conf.get("Labels") or {}
    for key in filter(None, (opts.get("labels") or "").split(",")):
        if key in labels:
            attrs[key] = labels[key]
    env = dict(e.partition("=")[::2] for e in conf.get("Env") or [])
    for key in filter(None, (opts.get("env") or "").split(",")):
        if key in env:
            attrs[key] = env[key]
    return (",".join(f"{k}={v}" for k, v in sorted(attrs.items())) + " ").encode()


def _with_details(data, details, timestamps):
    if timestamps:
        stamp, _, rest = data.partition(b" ")
        return stamp + b" " + details + rest
    return details + data


def export(ctx, argv):
    opts, args = parse(argv, [Flag("output", "o", kind="string")])
    _need(args, 1, "export")
    if opts["output"]:
        with open(opts["output"], "wb") as f:
            _service(ctx).export(args[0], f)
        return 0
    if ctx.stdout.isatty():
        raise UsageError("cowardly refusing to save to a terminal. Use the -o flag or "
                         "redirect")
    _service(ctx).export(args[0], ctx.stdout.buffer)
    return 0


def exec_(ctx, argv):
    opts, args = parse(argv, [Flag("detach", "d"), Flag("interactive", "i"), Flag("tty", "t"),
                              Flag("env", "e", kind="list"), Flag("user", "u", kind="string"),
                              Flag("workdir", "w", kind="string"), Flag("privileged"),
                              Flag("detach-keys", kind="string")], interspersed=False)
    if len(args) < 2:
        raise UsageError('"exec" requires at least 2 arguments.')
    try:
        argv = _service(ctx).exec_argv(args[0], args[1:], tty=opts["tty"], env=opts["env"],
                                        user=opts["user"], workdir=opts["workdir"],
                                        privileged=opts["privileged"], detach=opts["detach"])
    except BerthError as err:
        code = _exit_code_for(err)
        if code == 125:  # not the command's fault: Docker's CLI exits 1
            ctx.stderr.write(f"Error response from daemon: {err}\n")
            return 1
        ctx.stderr.write(f"OCI runtime exec failed: {err}: unknown\n")
        return code
    import subprocess
    stdin = None if opts["interactive"] else subprocess.DEVNULL
    code = subprocess.run(argv, stdin=stdin).returncode
    _service(ctx).exec_died(args[0], code)
    return code


exec_.error_exit = 126


def pause(ctx, argv):
    _, args = parse(argv, [])
    _need(args, 1, "pause")
    return _each(ctx, args, lambda svc, n: svc.pause(n))


def unpause(ctx, argv):
    _, args = parse(argv, [])
    _need(args, 1, "unpause")
    return _each(ctx, args, lambda svc, n: svc.unpause(n))


def top(ctx, argv):
    _, args = parse(argv, [], interspersed=False)
    _need(args, 1, "top")
    header, rows = _service(ctx).top(args[0], args[1:])
    ctx.out(header)
    for row in rows:
        ctx.out(row)
    return 0


def rename(ctx, argv):
    _, args = parse(argv, [])
    if len(args) != 2:
        raise UsageError('"rename" requires exactly 2 arguments.')
    _service(ctx).rename(args[0], args[1])
    return 0


def container_prune(ctx, argv):
    opts, _ = parse(argv, [Flag("force", "f"), Flag("filter", kind="list")])
    removed, freed = _service(ctx).prune(opts["filter"])
    if removed:
        ctx.out("Deleted Containers:")
        for cid in removed:
            ctx.out(cid)
        ctx.out("")
    ctx.out(f"Total reclaimed space: {output.human_size(freed)}")
    return 0


def attach(ctx, argv):
    opts, args = parse(argv, [Flag("no-stdin"), Flag("sig-proxy", default=True),
                              Flag("detach-keys", kind="string")])
    if len(args) != 1:
        raise UsageError('"attach" requires exactly 1 argument.')
    stdin = None if opts["no_stdin"] else sys.stdin
    svc = _service(ctx)
    code = _attach_with_terminal(svc, args[0], stdin, sys.stdout.buffer, sys.stderr.buffer,
                                 _tty(svc, args[0]), start=False, keys=opts["detach_keys"])
    return 0 if code == "detached" else code


def _tty(svc, record_or_name):
    record = record_or_name if isinstance(record_or_name, dict) else svc.get(record_or_name)
    return bool(((record or {}).get("config") or {}).get("Tty"))


def stats(ctx, argv):
    opts, args = parse(argv, [Flag("no-stream"), Flag("all", "a"), Flag("no-trunc"),
                              Flag("format", kind="string")])
    svc = _service(ctx)
    names = args or [r["id"] for r in svc.list(all_containers=False)]
    first = {}
    for name in names:
        first[name] = svc.stats(name)
    time.sleep(0.5)
    rows = []
    for name in names:
        record, data = svc.stats(name)
        before = (first[name][1].get("cpu") or {}).get("usage", {}).get("total", 0)
        now = (data.get("cpu") or {}).get("usage", {}).get("total", 0)
        cpu = (now - before) / 0.5e9 * 100
        mem = (data.get("memory") or {}).get("usage") or {}
        usage, limit = mem.get("usage", 0), mem.get("limit", 0)
        host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        limit = limit if 0 < limit < host else host
        pids = (data.get("pids") or {}).get("current", 0)
        rows.append({"ID": record["id"] if opts["no_trunc"] else record["id"][:12],
                     "Name": record["name"], "CPUPerc": f"{cpu:.2f}%",
                     "MemUsage": f"{output.bytes_size(usage)} / {output.bytes_size(limit)}",
                     "MemPerc": f"{usage / limit * 100 if limit else 0:.2f}%",
                     "NetIO": "0B / 0B", "BlockIO": "0B / 0B", "PIDs": str(pids)})
    if opts["format"]:
        ctx.out(output.render(opts["format"], rows))
        return 0
    ctx.out(output.table(["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %",
                          "NET I/O", "BLOCK I/O", "PIDS"],
                         [[r["ID"], r["Name"], r["CPUPerc"], r["MemUsage"], r["MemPerc"],
                           r["NetIO"], r["BlockIO"], r["PIDs"]] for r in rows]))
    return 0
