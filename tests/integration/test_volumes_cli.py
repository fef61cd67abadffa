"""Volumes end to end: `berth volume ...`, -v / --mount type=volume, image VOLUMEs, filling
a new volume from the image, rm -v, --rm, prune and `system df`."""

import json
import os

import pytest

from tests.integration.berthcli import IMAGE, berth_with_busybox, needs_berth_oci

pytestmark = needs_berth_oci

P = f"v{os.getpid()}"
DATA_IMAGE = f"{P}-data:1"


@pytest.fixture(scope="module")
def berth(busybox_rootfs, tmp_path_factory):
    b = next(gen := berth_with_busybox(busybox_rootfs, tmp_path_factory))
    # An image with /data holding a file with its own owner and mode, and VOLUME /data.
    b("run", "--name", f"{P}-mk", IMAGE, "sh", "-c",
      "mkdir -p /data/sub && echo hi > /data/f && chown 1000:100 /data/f && "
      "chmod 640 /data/f && chown 7:7 /data && chmod 750 /data")
    b("commit", "-c", "VOLUME /data", f"{P}-mk", DATA_IMAGE)
    b("rm", f"{P}-mk")
    yield b
    for line in b("volume", "ls", "-q", check=False).stdout.split():
        b("volume", "rm", "-f", line, check=False)
    next(gen, None)


def volumes(berth):
    return set(berth("volume", "ls", "-q").stdout.split())


def test_create_ls_inspect_rm(berth):
    name = f"{P}-a"
    assert berth("volume", "create", "--label", "k=v", name).stdout == f"{name}\n"
    assert berth("volume", "create", name).stdout == f"{name}\n"  # exists: fine, as Docker
    info = json.loads(berth("volume", "inspect", name).stdout)[0]
    assert set(info) == {"CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options",
                         "Scope"}
    assert info["Labels"] == {"k": "v"} and info["Driver"] == "local"
    assert info["Mountpoint"] == os.path.join(berth.root, "volumes", name, "_data")
    assert os.path.isdir(info["Mountpoint"])
    assert berth("volume", "inspect", "-f", "{{.Name}} {{.Scope}}", name).stdout == \
        f"{name} local\n"
    listing = berth("volume", "ls").stdout.splitlines()
    assert listing[0].split() == ["DRIVER", "VOLUME", "NAME"]
    assert ["local", name] in [line.split() for line in listing[1:]]
    assert berth("volume", "ls", "--format", "{{.Name}}:{{.Labels}}", "--filter",
                 f"name={name}").stdout == f"{name}:k=v\n"
    assert berth("volume", "ls", "-q", "--filter", "label=k=v").stdout.split() == [name]
    assert berth("volume", "ls", "-q", "--filter", "label=k=w").stdout == ""
    assert name in berth("volume", "ls", "-q", "--filter", "dangling=true").stdout.split()
    assert berth("volume", "rm", name).stdout == f"{name}\n"
    assert not os.path.exists(os.path.dirname(info["Mountpoint"]))
    gone = berth("volume", "rm", name, check=False)
    assert gone.returncode == 1
    assert gone.stderr == f"Error response from daemon: get {name}: no such volume\n"
    assert berth("volume", "rm", "-f", name).returncode == 0


@pytest.mark.parametrize("args,message", [
    (["-o", "bogus=1"], 'invalid option: "bogus"'),
    (["-o", "type=tmpfs"], 'missing required option: "device"'),
    (["-d", "nfsplugin"], 'plugin "nfsplugin" not found'),
    (["bad/name"], "includes invalid characters for a local volume name"),
])
def test_create_bad_input(berth, args, message):
    before = set(os.listdir(os.path.join(berth.root, "volumes"))) \
        if os.path.isdir(os.path.join(berth.root, "volumes")) else set()
    out = berth("volume", "create", *args, *([] if "bad/name" in args else [f"{P}-bad"]),
                check=False)
    assert out.returncode != 0
    assert message in out.stderr and out.stderr.count("\n") == 1
    assert f"{P}-bad" not in volumes(berth)
    after = set(os.listdir(os.path.join(berth.root, "volumes"))) \
        if os.path.isdir(os.path.join(berth.root, "volumes")) else set()
    assert after == before


def test_named_volume_is_filled_from_the_image_once(berth):
    name = f"{P}-fill"
    out = berth("run", "--rm", "-v", f"{name}:/data", DATA_IMAGE, "sh", "-c",
                "stat -c '%u:%g %a %n' /data /data/f; cat /data/f; ls /data; "
                "echo more > /data/g").stdout.splitlines()
    assert out[0] == "7:7 750 /data"
    assert out[1] == "1000:100 640 /data/f"
    assert out[2] == "hi"
    assert out[3:] == ["f", "sub"]
    # The volume outlives the container (--rm removes anonymous volumes only) and is not
    # filled again: what the first container wrote is still there.
    assert name in volumes(berth)
    assert berth("run", "--rm", "-v", f"{name}:/data:ro", DATA_IMAGE, "cat",
                 "/data/g").stdout == "more\n"
    ro = berth("run", "--rm", "-v", f"{name}:/data:ro", DATA_IMAGE, "touch", "/data/x",
               check=False)
    assert ro.returncode != 0 and "Read-only file system" in ro.stderr
    berth("volume", "rm", name)


def test_mount_type_volume_and_nocopy(berth):
    name = f"{P}-nocopy"
    out = berth("run", "--rm", "--mount",
                f"type=volume,source={name},target=/data,volume-nocopy", DATA_IMAGE,
                "ls", "-A", "/data")
    assert out.stdout == ""
    out = berth("run", "--rm", "--mount", f"type=volume,src={name}-2,dst=/data,readonly",
                DATA_IMAGE, "sh", "-c", "cat /data/f; touch /data/y 2>/dev/null || echo ro")
    assert out.stdout == "hi\nro\n"
    berth("volume", "rm", name, f"{name}-2")


def test_anonymous_volumes_and_rm_v(berth):
    before = volumes(berth)
    cid = berth("create", "--name", f"{P}-anon", "-v", "/scratch", "-v", f"{P}-named:/n",
                DATA_IMAGE, "true").stdout.strip()
    mounts = json.loads(berth("inspect", "-f", "{{json .Mounts}}", cid).stdout)
    by_dest = {m["Destination"]: m for m in mounts}
    assert set(by_dest) == {"/scratch", "/n", "/data"}  # /data: the image's VOLUME
    anon = {by_dest["/scratch"]["Name"], by_dest["/data"]["Name"]}
    assert all(len(n) == 64 for n in anon)
    labels = json.loads(berth("volume", "inspect", *anon).stdout)
    assert all("com.docker.volume.anonymous" in v["Labels"] for v in labels)
    # The image's VOLUME was filled from the image.
    data_dir = os.path.join(berth.root, "volumes", by_dest["/data"]["Name"], "_data")
    assert sorted(os.listdir(data_dir)) == ["f", "sub"]
    busy = berth("volume", "rm", f"{P}-named", check=False)
    assert busy.returncode == 1
    assert busy.stderr == (f"Error response from daemon: remove {P}-named: volume is in "
                           f"use - [{cid}]\n")
    berth("rm", "-v", cid)
    assert volumes(berth) == before | {f"{P}-named"}
    berth("volume", "rm", f"{P}-named")
    # --rm removes anonymous volumes too.
    berth("run", "--rm", "-v", "/scratch", DATA_IMAGE, "true")
    assert volumes(berth) == before


def test_prune(berth):
    berth("volume", "create", f"{P}-keep")
    cid = berth("create", "-v", "/x", IMAGE, "true").stdout.strip()
    anon = [m["Name"] for m in json.loads(berth("inspect", "-f", "{{json .Mounts}}",
                                                cid).stdout)]
    berth("rm", cid)  # without -v: the anonymous volume stays, unused
    out = berth("volume", "prune", "-f").stdout
    assert "Deleted" not in berth("volume", "prune", "-f").stdout
    assert out.startswith("Deleted Volumes:\n") and anon[0] in out
    assert "Total reclaimed space:" in out
    assert f"{P}-keep" in volumes(berth)
    unnamed = berth("volume", "create").stdout.strip()
    berth("volume", "prune", "-f")
    assert len(unnamed) == 64 and unnamed in volumes(berth)  # not anonymous: kept
    out = berth("volume", "prune", "-a", "-f").stdout
    assert unnamed in out
    assert f"{P}-keep" in out and f"{P}-keep" not in volumes(berth)


def test_tmpfs_and_bind_volume_options(berth, tmp_path):
    berth("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o",
          "o=size=1m", f"{P}-tmp")
    out = berth("run", "--rm", "-v", f"{P}-tmp:/t", IMAGE, "sh", "-c",
                "grep ' /t ' /proc/mounts").stdout
    assert out.split()[2] == "tmpfs" and "size=1024k" in out
    (tmp_path / "hostfile").write_text("from host\n")
    berth("volume", "create", "-o", "type=none", "-o", "o=bind", "-o",
          f"device={tmp_path}", f"{P}-bind")
    assert berth("run", "--rm", "-v", f"{P}-bind:/b", IMAGE, "cat",
                 "/b/hostfile").stdout == "from host\n"
    bad = berth("volume", "create", "-o", "type=none", "-o", "o=bind", "-o",
                f"device={tmp_path}/missing", f"{P}-bad2", check=False)
    assert bad.returncode == 1 and "no such file or directory" in bad.stderr
    berth("volume", "rm", f"{P}-tmp", f"{P}-bind")


def test_run_bad_volume_input_leaves_nothing(berth):
    before = (volumes(berth), berth("ps", "-aq").stdout)
    for args, message in (
            (["-v", "a/b:/x"], "includes invalid characters"),
            (["-v", f"{P}-dup:/x", "-v", "/x"], "Duplicate mount point: /x"),
            (["--mount", "type=volume,dst=rel"], "mount path must be absolute"),
    ):
        out = berth("run", "--rm", *args, IMAGE, "true", check=False)
        assert out.returncode == 125, out.stderr
        assert message in out.stderr and out.stderr.count("\n") <= 2
    assert (volumes(berth), berth("ps", "-aq").stdout) == before


def test_system_df(berth):
    berth("volume", "create", f"{P}-df")
    lines = berth("system", "df").stdout.splitlines()
    assert lines[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert [line.split()[0] for line in lines[1:]] == ["Images", "Containers", "Local",
                                                        "Build"]
    rows = berth("system", "df", "--format", "{{.Type}}|{{.TotalCount}}").stdout
    assert rows.splitlines()[2].startswith("Local Volumes|")
    verbose = berth("system", "df", "-v").stdout
    assert "Local Volumes space usage:" in verbose and f"{P}-df" in verbose
    berth("volume", "rm", f"{P}-df")
