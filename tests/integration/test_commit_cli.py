"""`berth diff` and `berth commit` end to end."""

import json
import os

from tests.integration.berthcli import IMAGE, needs_berth_oci

pytestmark = needs_berth_oci

P = f"cm{os.getpid()}"


def test_diff(berth):
    name = f"{P}-diff"
    berth("run", "--name", name, IMAGE, "sh", "-c",
          "echo new > /tmp/new; rm /bin/ls; echo changed >> /etc/passwd; "
          "rm -rf /etc/opq; mkdir -p /var/a; echo y > /var/a/b; "
          "rm -rf /home; mkdir /home; echo z > /home/only")
    lines = berth("diff", name).stdout.splitlines()
    assert "A /tmp/new" in lines and "C /tmp" in lines
    assert "D /bin/ls" in lines and "C /bin" in lines
    assert "C /etc/passwd" in lines
    assert "A /var/a" in lines and "A /var/a/b" in lines
    assert "A /home/only" in lines
    assert lines == sorted(lines, key=lambda line: line[2:])
    missing = berth("diff", "nosuch", check=False)
    assert missing.returncode == 1 and "No such container: nosuch" in missing.stderr
    berth("rm", name)


def test_commit_and_run(berth):
    name = f"{P}-src"
    berth("run", "--name", name, "-e", "FROMRUN=1", IMAGE, "sh", "-c",
          "echo payload > /payload; rm /bin/ls; mkdir /d; ln /payload /d/hard")
    image_id = berth("commit", "-a", "Ann <ann@x>", "-m", "a message",
                     "-c", "ENV ADDED=yes", "-c", 'CMD ["cat", "/payload"]',
                     "-c", "WORKDIR /d", "-c", "EXPOSE 8080", "-c", "LABEL k=v",
                     "-c", "USER 0", "-c", "STOPSIGNAL SIGINT", "-c", "VOLUME /vol",
                     "-c", "ENTRYPOINT []", "-c", "ONBUILD RUN true",
                     name, f"{P}-img:1").stdout.strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71
    assert berth("run", "--rm", f"{P}-img:1").stdout == "payload\n"
    out = berth("run", "--rm", f"{P}-img:1", "sh", "-c",
                "echo $ADDED $FROMRUN; pwd; ls /bin/ls 2>&1; stat -c %h /d/hard").stdout
    lines = out.splitlines()
    assert lines[0] == "yes 1" and lines[1] == "/d"
    assert "No such file" in lines[2] and lines[3] == "2"
    info = json.loads(berth("image", "inspect", f"{P}-img:1").stdout)[0]
    conf = info["Config"]
    assert conf["Labels"]["k"] == "v" and "8080/tcp" in conf["ExposedPorts"]
    assert conf["StopSignal"] == "SIGINT" and "/vol" in conf["Volumes"]
    assert conf["OnBuild"] == ["RUN true"]
    assert info["Author"] == "Ann <ann@x>"
    assert info["Id"] == image_id
    history = berth("history", f"{P}-img:1").stdout.splitlines()
    assert "a message" in history[1]
    berth("rm", "-v", name)


def test_commit_running_container_pauses_and_resumes(berth):
    name = f"{P}-live"
    berth("run", "-d", "--name", name, IMAGE, "sh", "-c",
          "echo live > /live; sleep 1000")
    berth("exec", name, "sh", "-c", "while [ ! -e /live ]; do sleep 0.05; done")
    image_id = berth("commit", name).stdout.strip()  # no name: a dangling image
    assert berth("inspect", "-f", "{{.State.Status}}", name).stdout == "running\n"
    assert berth("run", "--rm", image_id[7:19], "cat", "/live").stdout == "live\n"
    berth("commit", "--pause=false", name, f"{P}-nopause")
    berth("rm", "-f", name)


def test_commit_bad_input_leaves_nothing(berth):
    name = f"{P}-bad"
    berth("run", "--name", name, IMAGE, "true")
    before = berth("images", "-q").stdout
    for args, message in (
            (["-c", "RUN true"], "RUN is not a valid change command"),
            (["-c", "BOGUS x"], "unknown instruction: BOGUS"),
            (["-c", "EXPOSE notaport"], "invalid containerPort"),
    ):
        out = berth("commit", *args, name, f"{P}-never", check=False)
        assert out.returncode != 0 and message in out.stderr, out.stderr
        assert out.stderr.count("\n") == 1
    ref = berth("commit", name, "UPPER/Case", check=False)
    assert ref.returncode != 0 and "invalid reference format" in ref.stderr
    assert berth("commit", "nosuch", check=False).returncode != 0
    assert berth("images", "-q").stdout == before
    berth("rm", name)
