"""`berth cp` end to end: Docker's path rules both ways, tar streams, running and stopped
containers, volumes, and containers that plant or swap symlinks to / while cp runs
(the CVE-2018-15664 class): nothing outside the container is read or written."""

import io
import os
import tarfile

import pytest

from tests.integration.berthcli import IMAGE, needs_berth_oci

pytestmark = needs_berth_oci

P = f"cp{os.getpid()}"


@pytest.fixture(scope="module")
def box(berth):
    """A running container with a small tree in /src and a named volume on /vol."""
    name = f"{P}-box"
    berth("run", "-d", "--name", name, "-v", f"{P}-vol:/vol", IMAGE, "sh", "-c",
          "mkdir -p /src/d/e && echo one > /src/f && echo two > /src/d/g && "
          "ln -s f /src/link && chown 5:6 /src/f && chmod 604 /src/f && "
          "echo invol > /vol/v && sleep 1000")
    berth("exec", name, "sh", "-c", "while [ ! -e /vol/v ]; do sleep 0.05; done")
    yield name
    berth("rm", "-f", name, check=False)
    berth("volume", "rm", "-f", f"{P}-vol", check=False)


def test_copy_out_path_rules(berth, box, tmp_path):
    berth("cp", f"{box}:/src/f", str(tmp_path / "f"))
    assert (tmp_path / "f").read_text() == "one\n"
    assert oct((tmp_path / "f").stat().st_mode & 0o777) == "0o604"
    (tmp_path / "old").write_text("x" * 100)
    berth("cp", f"{box}:/src/f", str(tmp_path / "old"))  # a file over a file
    assert (tmp_path / "old").read_text() == "one\n"
    berth("cp", f"{box}:/src", str(tmp_path / "new"))  # a dir to a new path
    assert sorted(os.listdir(tmp_path / "new")) == ["d", "f", "link"]
    assert os.readlink(tmp_path / "new" / "link") == "f"
    berth("cp", f"{box}:/src", str(tmp_path / "new"))  # a dir into an existing dir
    assert os.path.isdir(tmp_path / "new" / "src" / "d" / "e")
    (tmp_path / "contents").mkdir()
    berth("cp", f"{box}:/src/d/.", str(tmp_path / "contents"))  # only the contents
    assert sorted(os.listdir(tmp_path / "contents")) == ["e", "g"]
    berth("cp", "-L", f"{box}:/src/link", str(tmp_path / "followed"))
    assert (tmp_path / "followed").read_text() == "one\n"
    berth("cp", f"{box}:/vol/v", str(tmp_path / "v"))  # from a volume
    assert (tmp_path / "v").read_text() == "invol\n"
    bad = berth("cp", f"{box}:/src", str(tmp_path / "f"), check=False)
    assert bad.returncode == 1 and "cannot overwrite non-directory" in bad.stderr
    missing = berth("cp", f"{box}:/nope", str(tmp_path / "x"), check=False)
    assert missing.returncode == 1
    assert missing.stderr == ("Error response from daemon: Could not find the file /nope "
                              f"in container {box}\n")
    assert not (tmp_path / "x").exists()
    both = berth("cp", f"{box}:/a", f"{box}:/b", check=False)
    assert both.returncode != 0 and "copying between containers is not supported" in \
        both.stderr


def test_copy_in_path_rules(berth, box, tmp_path):
    (tmp_path / "h").write_text("host\n")
    os.chmod(tmp_path / "h", 0o640)
    os.chown(tmp_path / "h", 1234, 1234)
    (tmp_path / "dir" / "sub").mkdir(parents=True)
    (tmp_path / "dir" / "sub" / "x").write_text("x\n")
    berth("cp", str(tmp_path / "h"), f"{box}:/tmp/")
    berth("cp", "-a", str(tmp_path / "h"), f"{box}:/tmp/h-archive")
    berth("cp", str(tmp_path / "dir"), f"{box}:/tmp/newdir")
    berth("cp", str(tmp_path / "dir"), f"{box}:/tmp/newdir")
    berth("cp", str(tmp_path / "dir") + "/.", f"{box}:/vol")
    out = berth("exec", box, "sh", "-c",
                "stat -c '%u:%g %a' /tmp/h /tmp/h-archive; cat /tmp/h; "
                "ls /tmp/newdir /tmp/newdir/dir; cat /vol/sub/x").stdout.splitlines()
    assert out[:3] == ["0:0 640", "1234:1234 640", "host"]
    assert "sub" in out and "dir" in out
    assert out[-1] == "x"
    bad = berth("cp", str(tmp_path / "nope"), f"{box}:/tmp/", check=False)
    assert bad.returncode == 1 and "no such file or directory" in bad.stderr


def test_tar_streams(berth, box):
    proc = berth.argv("cp", f"{box}:/src", "-")
    import subprocess
    raw = subprocess.run(proc, capture_output=True, env=berth.env, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(raw)) as t:
        names = sorted(t.getnames())
    assert names == ["src", "src/d", "src/d/e", "src/d/g", "src/f", "src/link"]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("streamed/file")
        data = b"via tar\n"
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    subprocess.run(berth.argv("cp", "-", f"{box}:/tmp"), input=buf.getvalue(),
                   env=berth.env, check=True, capture_output=True)
    assert berth("exec", box, "cat", "/tmp/streamed/file").stdout == "via tar\n"
    notdir = subprocess.run(berth.argv("cp", "-", f"{box}:/src/f"), input=buf.getvalue(),
                            env=berth.env, capture_output=True, text=False)
    assert notdir.returncode == 1 and b"must be a directory" in notdir.stderr


def test_stopped_container(berth, tmp_path):
    name = f"{P}-stopped"
    berth("run", "--name", name, "-v", f"{P}-svol:/vol", IMAGE, "sh", "-c",
          "echo before > /etc/stopped; echo v > /vol/in")
    (tmp_path / "h").write_text("later\n")
    berth("cp", str(tmp_path / "h"), f"{name}:/etc/h")
    berth("cp", str(tmp_path / "h"), f"{name}:/vol/h")
    berth("cp", f"{name}:/etc/stopped", str(tmp_path / "out"))
    berth("cp", f"{name}:/vol/in", str(tmp_path / "vin"))
    assert (tmp_path / "out").read_text() == "before\n"
    assert (tmp_path / "vin").read_text() == "v\n"
    assert sorted(os.listdir(os.path.join(berth.root, "volumes", f"{P}-svol", "_data"))) \
        == ["h", "in"]
    # The stopped container's tree was mounted in a private namespace only.
    assert not [line for line in open("/proc/self/mountinfo") if "/cp-" in line]
    berth("start", name)
    berth("wait", name)
    assert "/etc/h" in berth("diff", name).stdout
    berth("rm", name)
    berth("volume", "rm", f"{P}-svol")


def test_planted_symlinks_stay_inside(berth, tmp_path):
    name = f"{P}-evil"
    secret = f"/tmp/{P}-secret"
    with open(secret, "w") as f:
        f.write("host secret\n")
    try:
        berth("run", "-d", "--name", name, IMAGE, "sh", "-c",
              "ln -s / /escape; ln -s /../../../.. /up; ln -s /proc/self/root /magic; "
              "mkdir /tmp/x; sleep 1000")
        berth("exec", name, "sh", "-c", "while [ ! -e /tmp/x ]; do sleep 0.05; done")
        for path in (f"/escape{secret}", f"/up{secret}"):
            out = berth("cp", f"{name}:{path}", str(tmp_path / "got"), check=False)
            assert out.returncode == 1 and "Could not find the file" in out.stderr
            assert not (tmp_path / "got").exists()
        magic = berth("cp", f"{name}:/magic{secret}", str(tmp_path / "got"), check=False)
        assert magic.returncode == 1 and not (tmp_path / "got").exists()
        (tmp_path / "w").write_text("written\n")
        target = f"/tmp/{P}-written"
        berth("cp", str(tmp_path / "w"), f"{name}:/escape{target}")
        berth("cp", str(tmp_path / "w"), f"{name}:/up{target}-2")
        assert not os.path.exists(target) and not os.path.exists(target + "-2")
        assert berth("exec", name, "cat", target, target + "-2").stdout == "written\n" * 2
        # /escape itself is copied as the symlink it is, not followed.
        berth("cp", f"{name}:/escape", str(tmp_path / "esc"))
        assert os.readlink(tmp_path / "esc") == "/"
    finally:
        os.unlink(secret)
        berth("rm", "-f", name, check=False)


def test_symlink_swap_race(berth, tmp_path):
    """The container swaps /w/d between a directory and a symlink to / as fast as it can
    while cp reads and writes through /w/d: whatever cp does happens inside the container."""
    name = f"{P}-race"
    secret = f"/tmp/{P}-race-secret"
    marker = f"{P}-race-marker"
    with open(secret, "w") as f:
        f.write("host secret\n")
    (tmp_path / "m").write_text("m\n")
    try:
        berth("run", "-d", "--name", name, IMAGE, "sh", "-c",
              f"mkdir -p /w /tmp; echo decoy > /tmp/{P}-race-secret; "
              "while true; do mkdir -p /w/d; echo inside > /w/d/file; rm -rf /w/d; "
              "ln -s / /w/d; rm -f /w/d; done")
        for i in range(25):
            out = berth("cp", f"{name}:/w/d{secret}", str(tmp_path / f"got{i}"),
                        check=False)
            if out.returncode == 0:
                assert (tmp_path / f"got{i}").read_text() == "decoy\n"
            berth("cp", str(tmp_path / "m"), f"{name}:/w/d/{marker}", check=False)
            berth("cp", str(tmp_path / "m"), f"{name}:/w/d/tmp/{marker}", check=False)
        assert not os.path.exists(f"/{marker}") and not os.path.exists(f"/tmp/{marker}")
        with open(secret) as f:
            assert f.read() == "host secret\n"
    finally:
        os.unlink(secret)
        for leftover in (f"/{marker}", f"/tmp/{marker}"):
            if os.path.exists(leftover):
                os.unlink(leftover)
        berth("rm", "-f", name, check=False)
