"""`berth events` end to end: what the engine, the monitors and the image service journal,
Docker's line format, filters, --format, --since/--until and following."""

import json
import os
import subprocess
import time

from tests.integration.berthcli import IMAGE, needs_berth_oci

pytestmark = needs_berth_oci

P = f"ev{os.getpid()}"


def actions(berth, *filters, since="10m"):
    args = ["events", "--since", since, "--until", "0s"]
    for f in filters:
        args += ["--filter", f]
    return [json.loads(line) for line in berth(*args, "--format", "{{json .}}").stdout
            .splitlines()]


def test_a_containers_life_in_events(berth):
    name = f"{P}-life"
    since = str(time.time() - 1)
    script = 'trap "exit 0" TERM; while true; do sleep 0.1; done'
    cid = berth("run", "-d", "--name", name, "-l", "tier=web", IMAGE, "sh", "-c",
                script).stdout.strip()
    berth("pause", name)
    berth("unpause", name)
    berth("exec", name, "true")
    berth("stop", name)
    berth("rename", name, name + "-2")
    berth("rm", name + "-2")
    evs = actions(berth, f"container={cid[:12]}", since=since)
    seq = [e["Action"] for e in evs]
    assert seq == ["create", "start", "pause", "unpause", "exec_create: true",
                   "exec_start: true", "exec_die", "kill", "die", "stop", "rename",
                   "destroy"], seq
    die = evs[seq.index("die")]
    assert die["Actor"]["Attributes"]["exitCode"] == "0"
    assert die["Actor"]["Attributes"]["tier"] == "web"
    assert die["Type"] == "container" and die["id"] == cid and die["from"] == IMAGE
    assert evs[seq.index("kill")]["Actor"]["Attributes"]["signal"] == "15"
    assert evs[seq.index("rename")]["Actor"]["Attributes"]["oldName"] == "/" + name

    lines = berth("events", "--since", since, "--until", "0s", "--filter",
                  f"container={cid}", "--filter", "event=start").stdout.splitlines()
    assert len(lines) == 1
    stamp, kind, action, actor, attrs = lines[0].split(" ", 4)
    assert stamp.endswith("Z") and len(stamp) == len("2026-11-22T04:00:00.000000000Z")
    assert (kind, action, actor) == ("container", "start", cid)
    assert attrs == f"(image={IMAGE}, name={name}, tier=web)"
    assert berth("events", "--since", since, "--until", "0s", "--filter", "label=tier=web",
                 "--filter", "event=die", "--format", "{{.Actor.Attributes.exitCode}} "
                 "{{.Type}} {{.Status}}").stdout.split() == ["0", "container", "die"]


def test_exit_codes_kill_signals_and_image_events(berth):
    since = str(time.time() - 1)
    cid = berth("run", "-d", IMAGE, "sleep", "300").stdout.strip()
    berth("kill", "-s", "KILL", cid)
    berth("wait", cid)
    evs = actions(berth, f"container={cid}", "event=kill", "event=die", since=since)
    assert [(e["Action"], e["Actor"]["Attributes"].get("signal"),
             e["Actor"]["Attributes"].get("exitCode")) for e in evs] == \
        [("kill", "9", None), ("die", None, "137")]
    berth("rm", cid)
    berth("tag", IMAGE, f"{P}-img:1")
    berth("rmi", f"{P}-img:1")
    evs = actions(berth, "type=image", "event=tag", "event=untag", since=since)
    assert [(e["Action"], e["Actor"]["Attributes"]["name"]) for e in evs] == \
        [("tag", f"{P}-img:1"), ("untag", f"{P}-img:1")]
    assert all(e["Actor"]["ID"].startswith("sha256:") for e in evs)
    assert actions(berth, "type=image", f"image={P}-img:1", since=since)
    imported = actions(berth, "type=image", "event=import", since="1h")
    assert imported and imported[0]["Actor"]["Attributes"]["name"] == IMAGE
    cid = berth("run", "-d", IMAGE, "sleep", "300").stdout.strip()
    image_id = berth("commit", cid, f"{P}-snap:1").stdout.strip()
    (commit,) = actions(berth, f"container={cid}", "event=commit", since=since)
    assert commit["Actor"]["Attributes"]["imageID"] == image_id
    assert commit["Actor"]["Attributes"]["imageRef"] == f"{P}-snap:1"
    berth("rm", "-f", cid)
    berth("rmi", f"{P}-snap:1")
    assert not actions(berth, "type=container", f"image={P}-img:1", since=since)


def test_follow_streams_new_events_and_until_ends(berth):
    name = f"{P}-follow"
    since = str(time.time())
    # --since without --until: what happened since, then follow.
    proc = subprocess.Popen(berth.argv("events", "--since", since, "--filter",
                                       f"container={name}"),
                            env=berth.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        berth("run", "--name", name, IMAGE, "true")
        seen = []
        while "die" not in seen:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            seen.append(line.split(" ")[2])
        assert seen[:3] == ["create", "start", "die"]
    finally:
        proc.kill()
        proc.wait()
        berth("rm", "-f", name, check=False)
    # --until in the past: print and end; bad input is one line.
    assert berth("events", "--since", "1h", "--until", "1s", check=False).returncode == 0
    bad = berth("events", "--filter", "colour=red", check=False)
    assert bad.returncode != 0 and "invalid filter 'colour=red'" in bad.stderr
    bad = berth("events", "--since", "yesterday", check=False)
    assert bad.returncode != 0 and 'failed to parse value as time or duration' in bad.stderr

