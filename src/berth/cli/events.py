"""`berth events` and `berth system restore`: parsing and printing; the journal is
berth.events', the restore berth.engine.reconcile's."""

from berth.flags import Flag, UsageError, parse


def events(ctx, argv):
    from berth import events as journal
    from berth.engine.logs import parse_time

    opts, args = parse(argv, [Flag("since", kind="string"), Flag("until", kind="string"),
                              Flag("filter", "f", kind="list"), Flag("format", kind="string")])
    if args:
        raise UsageError('"events" accepts no arguments.')
    since = parse_time(opts["since"], "since") if opts["since"] else None
    until = parse_time(opts["until"], "until") if opts["until"] else None
    try:
        keep = journal.matcher(opts["filter"])
    except ValueError as err:
        raise UsageError(str(err)) from None
    template = opts["format"]
    if template:
        from berth.cli import output
    out = ctx.stdout
    for ev in journal.read(journal.journal_path(ctx.root), since_ns=since, until_ns=until,
                           follow=until is None, keep=keep):
        if template:
            try:
                line = output.render(template, [_row(ev)])
            except output.TemplateError as err:
                raise UsageError(str(err)) from None
        else:
            line = journal.format_line(ev)
        out.write(line + "\n")
        out.flush()
    return 0


class _Row(dict):
    """An event for templates: the message itself (so ``{{json .}}`` prints it as Docker
    does), with Docker's Go field names for the lower-case ones."""

    ALIASES = {"ID": "id", "Status": "status", "From": "from", "Scope": "scope",
               "Time": "time", "TimeNano": "timeNano"}

    def get(self, key, default=None):
        if key in self:
            return self[key]
        return super().get(self.ALIASES.get(key, key), default)


def _row(ev):
    return _Row(ev)


def system_restore(ctx, argv):
    """Start what the restart policies say should run, after a reboot or a crash."""
    _, args = parse(argv, [])
    if args:
        raise UsageError('"system restore" accepts no arguments.')
    from berth.cli.containers import _service
    from berth.engine import reconcile

    code = 0
    for cid, error in reconcile.restore(_service(ctx)):
        if error:
            ctx.stderr.write(f"Error response from daemon: {cid[:12]}: {error}\n")
            code = 1
        else:
            ctx.out(cid)
    return code


def system_check_containers(ctx):
    """The containers' part of `berth system check`: problems, one a line."""
    from berth.cli.containers import _service
    from berth.engine import reconcile

    return reconcile.check(_service(ctx))
