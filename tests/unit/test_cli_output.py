"""The CLI's printing: Docker's units, durations, tables and --format templates."""

import pytest

from berth.cli import output
from berth.flags import Flag, UsageError, parse


@pytest.mark.parametrize("n,text", [(0, "0B"), (999, "999B"), (1000, "1kB"), (4261000, "4.26MB"),
                                    (1234567890, "1.23GB"), (100_000_000, "100MB")])
def test_human_size(n, text):
    assert output.human_size(n) == text


@pytest.mark.parametrize("s,text", [(0.5, "Less than a second"), (1, "1 second"),
                                    (45, "45 seconds"), (61, "About a minute"),
                                    (600, "10 minutes"), (3600, "About an hour"),
                                    (5 * 3600, "5 hours"), (3 * 86400, "3 days"),
                                    (15 * 86400, "2 weeks"), (90 * 86400, "3 months"),
                                    (800 * 86400, "2 years")])
def test_human_duration(s, text):
    assert output.human_duration(s) == text


def test_parse_time():
    assert output.parse_time("1970-01-01T00:00:10Z") == 10
    assert output.parse_time("1970-01-01T01:00:10.5+01:00") == 10.5
    assert output.parse_time("") == 0


def test_table_aligns_like_docker():
    text = output.table(["REPOSITORY", "TAG"], [["busybox", "latest"], ["a/very/long", "1"]])
    assert text.splitlines() == ["REPOSITORY    TAG", "busybox       latest",
                                 "a/very/long   1"]


def test_templates():
    rows = [{"Repository": "busybox", "Tag": "latest", "Labels": {"a": "b"}, "N": ["x", "y"]}]
    assert output.render("{{.Repository}}:{{.Tag}}", rows) == "busybox:latest"
    assert output.render("{{json .Labels}}", rows) == '{"a":"b"}'
    assert output.render('{{index .Labels "a"}} {{join .N ","}}', rows) == "b x,y"
    assert output.render("{{if .Tag}}t{{else}}n{{end}}", rows) == "t"
    table = output.render("table {{.Repository}}\\t{{.Tag}}", rows)
    assert table.splitlines() == ["REPOSITORY   TAG", "busybox      latest"]
    with pytest.raises(output.TemplateError):
        output.render("{{nosuch .X}}", rows)


def test_flags_like_cobra():
    flags = [Flag("interactive", "i"), Flag("tty", "t"), Flag("name", kind="string"),
             Flag("env", "e", kind="list"), Flag("cpus", kind="string")]
    opts, rest = parse(["-it", "--name=x", "-e", "A=1", "-eB=2", "img", "--cpus", "2"], flags)
    assert opts["interactive"] and opts["tty"] and opts["name"] == "x"
    assert opts["env"] == ["A=1", "B=2"] and opts["cpus"] == "2" and rest == ["img"]
    opts, rest = parse(["img", "--cpus", "2"], flags, interspersed=False)
    assert rest == ["img", "--cpus", "2"]
    with pytest.raises(UsageError, match="unknown flag: --nope"):
        parse(["--nope"], flags)
    with pytest.raises(UsageError, match="unknown shorthand flag: 'z' in -iz"):
        parse(["-iz"], flags)
    with pytest.raises(UsageError, match="flag needs an argument: --name"):
        parse(["--name"], flags)
