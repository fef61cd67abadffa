"""Healthchecks end to end: --health-* and an image's HEALTHCHECK, ps and inspect, filters,
timeouts, the start period and --health-on-failure, with real containers."""

import hashlib
import io
import json
import os
import tarfile

from tests.integration.berthcli import IMAGE, needs_berth_oci, until

pytestmark = needs_berth_oci

P = f"hc{os.getpid()}"


def health(berth, name):
    out = berth("inspect", "--format", "{{json .State.Health}}", name).stdout.strip()
    return json.loads(out) if out not in ("", "null", "<no value>") else None


def test_healthy_then_unhealthy_in_ps_inspect_filters_and_events(berth):
    name = f"{P}-web"
    berth("run", "-d", "--name", name, "--health-cmd", "cat /ok", "--health-interval", "1s",
          "--health-retries", "2", IMAGE, "sh", "-c", "echo fine > /ok; sleep 300")
    until("healthy", lambda: (health(berth, name) or {}).get("Status") == "healthy")
    status = berth("ps", "--filter", f"name={name}", "--format", "{{.Status}}").stdout
    assert status.strip().endswith("(healthy)") and status.startswith("Up ")
    h = health(berth, name)
    assert h["FailingStreak"] == 0
    assert h["Log"][-1]["ExitCode"] == 0 and h["Log"][-1]["Output"] == "fine\n"
    assert h["Log"][-1]["Start"].endswith("Z") and h["Log"][-1]["End"] >= h["Log"][-1]["Start"]
    assert name in berth("ps", "--filter", "health=healthy", "--format", "{{.Names}}").stdout
    assert name not in berth("ps", "--filter", "health=none", "--format", "{{.Names}}").stdout

    berth("exec", name, "rm", "/ok")
    until("unhealthy", lambda: (health(berth, name) or {}).get("Status") == "unhealthy")
    h = health(berth, name)
    assert h["FailingStreak"] >= 2 and h["Log"][-1]["ExitCode"] == 1
    assert "No such file" in h["Log"][-1]["Output"]
    assert len(h["Log"]) <= 5
    assert "(unhealthy)" in berth("ps", "--filter", f"name={name}").stdout
    assert name in berth("ps", "--filter", "health=unhealthy", "--format", "{{.Names}}").stdout
    events = berth("events", "--since", "5m", "--until", "0s", "--filter",
                   f"container={name}", "--filter", "event=health_status").stdout
    actions = [line.split(" ", 2)[2].split(" ")[0:2] for line in events.splitlines()]
    assert actions[:2] == [["health_status:", "healthy"], ["health_status:", "unhealthy"]]

    plain = f"{P}-plain"
    berth("run", "-d", "--name", plain, IMAGE, "sleep", "300")
    assert plain in berth("ps", "--filter", "health=none", "--format", "{{.Names}}").stdout
    assert health(berth, plain) is None
    assert "(" not in berth("ps", "--filter", f"name={plain}", "--format",
                            "{{.Status}}").stdout
    berth("rm", "-f", name, plain)


def test_probe_timeout_is_killed_and_reported(berth):
    name = f"{P}-slow"
    berth("run", "-d", "--name", name, "--health-cmd", "sleep 301", "--health-interval",
          "1s", "--health-timeout", "1s", "--health-retries", "1", IMAGE, "sleep", "300")
    until("unhealthy", lambda: (health(berth, name) or {}).get("Status") == "unhealthy")
    last = health(berth, name)["Log"][-1]
    assert last["ExitCode"] == -1
    assert last["Output"] == "Health check exceeded timeout (1s)"
    # Each probe's process in the container is killed at its timeout, not left behind.
    until("three probes", lambda: len(health(berth, name)["Log"]) >= 3)
    procs = berth("exec", name, "ps").stdout.splitlines()
    assert len([p for p in procs if "sleep 301" in p]) <= 1
    berth("rm", "-f", name)


def test_start_period_keeps_starting(berth):
    name = f"{P}-boot"
    berth("run", "-d", "--name", name, "--health-cmd", "false", "--health-interval", "1s",
          "--health-start-period", "300s", "--health-start-interval", "1s",
          "--health-retries", "1", IMAGE, "sleep", "300")
    until("two probes", lambda: len((health(berth, name) or {}).get("Log") or []) >= 2)
    h = health(berth, name)
    assert h["Status"] == "starting" and h["FailingStreak"] == 0
    assert "(health: starting)" in berth("ps", "--filter", f"name={name}").stdout
    assert name in berth("ps", "--filter", "health=starting", "--format", "{{.Names}}").stdout
    berth("rm", "-f", name)


def test_health_on_failure_restart_brings_it_back_healthy(berth):
    name = f"{P}-heal"
    # The first run is unhealthy (no /ok); the restarted one (same filesystem) is healthy.
    berth("run", "-d", "--name", name, "--health-cmd", "test -e /ok", "--health-interval",
          "1s", "--health-retries", "1", "--health-on-failure", "restart", IMAGE, "sh", "-c",
          "if [ -e /ran ]; then touch /ok; else touch /ran; fi; sleep 300")
    until("healthy after a restart",
          lambda: (health(berth, name) or {}).get("Status") == "healthy", deadline=90)
    info = json.loads(berth("inspect", name).stdout)[0]
    assert info["RestartCount"] >= 1 and info["State"]["Running"]
    assert info["HostConfig"]["HealthOnFailure"] == "restart"
    berth("rm", "-f", name)


def test_health_on_failure_kill_and_stop(berth):
    killed = f"{P}-kill"
    berth("run", "-d", "--name", killed, "--health-cmd", "false", "--health-interval", "1s",
          "--health-retries", "1", "--health-on-failure", "kill", IMAGE, "sleep", "300")
    assert berth("wait", killed).stdout.strip() == "137"
    stopped = f"{P}-stop"
    script = 'trap "exit 7" TERM; while true; do sleep 0.1; done'
    berth("run", "-d", "--name", stopped, "--restart", "always", "--health-cmd", "false",
          "--health-interval", "1s", "--health-retries", "1", "--health-on-failure", "stop",
          IMAGE, "sh", "-c", script)
    assert berth("wait", stopped).stdout.strip() == "7"
    state = json.loads(berth("inspect", stopped).stdout)[0]["State"]
    assert not state["Running"] and state["Health"]["Status"] == "unhealthy"
    bad = berth("run", "--health-on-failure", "explode", IMAGE, "true", check=False)
    assert bad.returncode == 125 and "--health-on-failure" in bad.stderr
    berth("rm", "-f", killed, stopped)


def _image_with_healthcheck(busybox_rootfs, path, tag):
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as t:
        for name in sorted(os.listdir(busybox_rootfs)):
            t.add(os.path.join(busybox_rootfs, name), arcname=name)
    layer = layer.getvalue()
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sleep", "300"],
                   "Healthcheck": {"Test": ["CMD-SHELL", "echo from-image"],
                                   "Interval": 1_000_000_000, "Retries": 1}},
        "rootfs": {"type": "layers",
                   "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]}}).encode()
    manifest = json.dumps([{"Config": "config.json", "RepoTags": [tag],
                            "Layers": ["layer.tar"]}]).encode()
    with tarfile.open(path, "w") as t:
        for name, data in (("layer.tar", layer), ("config.json", config),
                           ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))


def test_the_images_healthcheck_and_no_healthcheck(berth, busybox_rootfs, tmp_path):
    tag = f"{P}-img:1"
    _image_with_healthcheck(busybox_rootfs, tmp_path / "img.tar", tag)
    berth("load", "-i", str(tmp_path / "img.tar"))
    name = f"{P}-fromimage"
    berth("run", "-d", "--name", name, tag)
    until("healthy", lambda: (health(berth, name) or {}).get("Status") == "healthy")
    assert health(berth, name)["Log"][-1]["Output"] == "from-image\n"
    off = f"{P}-off"
    berth("run", "-d", "--name", off, "--no-healthcheck", tag)
    assert off in berth("ps", "--filter", "health=none", "--format", "{{.Names}}").stdout
    berth("rm", "-f", name, off)
    berth("rmi", tag)
