"""The `run` path end to end: `run --rm` with -d (and an attached `run --rm` whose CLI was
killed) removes the container once it has exited, as Docker's daemon does, by the next
berth command (the monitor records the exit; see engine/reconcile.auto_remove) or by `stop`
at once; the user is resolved from the image's layers without a mount; a failed create (a
name taken) leaves no snapshot directory behind."""

import os
import signal
import subprocess
import time

from tests.integration.berthcli import IMAGE, needs_berth_oci

pytestmark = needs_berth_oci

P = f"run{os.getpid()}"  # names unique to this test run


def listed(berth):
    return berth("ps", "-a", "-q", "--no-trunc").stdout.split()


def poll(what, deadline_s=120):
    # A safety net against hanging, not a timing assertion.
    end = time.monotonic() + deadline_s
    while not what():
        assert time.monotonic() < end, "gave up waiting"
        time.sleep(0.05)


def gone(berth, cid):
    return (cid not in listed(berth) and not os.path.exists(os.path.join(
        berth.root, "containers", cid)) and not os.path.exists(os.path.join(
            berth.root, "run", "autoremove", cid)))


def test_detached_rm_container_is_removed_after_it_exits(berth):
    cid = berth("run", "-d", "--rm", IMAGE, "sh", "-c", "exit 3").stdout.strip()
    assert len(cid) == 64
    poll(lambda: gone(berth, cid))
    assert berth("inspect", cid, check=False).returncode != 0


def test_stop_removes_a_detached_rm_container_at_once(berth):
    cid = berth("run", "-d", "--rm", IMAGE, "sleep", "1000").stdout.strip()
    assert cid in listed(berth)
    berth("stop", "-t", "1", cid)
    assert not os.path.exists(os.path.join(berth.root, "containers", cid))
    assert cid not in listed(berth)


def test_a_created_rm_container_stays(berth):
    cid = berth("create", "--rm", IMAGE, "true").stdout.strip()
    assert cid in listed(berth)
    assert cid in listed(berth)  # the first ps must not have removed it
    berth("rm", cid)


def test_attached_rm_whose_cli_was_killed_is_removed_later(berth, tmp_path):
    go = tmp_path / "go"
    proc = subprocess.Popen(berth.argv("run", "--rm", "-v", f"{tmp_path}:/host", IMAGE, "sh",
                                       "-c", "while [ ! -e /host/go ]; do sleep 0.05; done"),
                            env=berth.env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        poll(lambda: berth("ps", "-q", "--no-trunc").stdout.split())
        (cid,) = berth("ps", "-q", "--no-trunc").stdout.split()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert cid in listed(berth)  # still running: kept
        go.write_text("")
        poll(lambda: gone(berth, cid))
    finally:
        go.write_text("")
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def snapshot_dirs(berth):
    base = os.path.join(berth.root, "snapshots", "overlay")
    return sorted(os.listdir(base)) if os.path.isdir(base) else []


def test_user_from_the_image_layers(berth):
    out = berth("run", "--rm", "--network", "none", "-u", "nobody", IMAGE, "id").stdout
    assert out.startswith("uid=65534(nobody)")
    missing = berth("run", "--rm", "--network", "none", "-u", "nosuchuser", IMAGE, "id",
                    check=False)
    assert missing.returncode == 125 and "unable to find user nosuchuser" in missing.stderr
    assert not [line for line in open("/proc/self/mountinfo") if berth.root in line]


def test_name_taken_leaves_nothing(berth):
    name = f"{P}-taken"
    cid = berth("create", "--name", name, "--network", "none", IMAGE, "true").stdout.strip()
    before = snapshot_dirs(berth)
    dup = berth("create", "--name", name, "--network", "none", IMAGE, "true", check=False)
    assert dup.returncode == 125 and "is already in use" in dup.stderr
    assert snapshot_dirs(berth) == before
    assert sorted(os.listdir(os.path.join(berth.root, "containers"))) == [cid]
    berth("rm", cid)
