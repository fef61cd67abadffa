"""The berth-oci launcher: its module bundle is used while fresh and bypassed once stale."""

import os
import shutil
import subprocess

import pytest

from berth.runtime import install

SRC = os.path.join(os.path.dirname(__file__), "..", "..", "src")


@pytest.fixture
def installed(tmp_path):
    """A copy of src/ and a launcher installed from it under tmp_path."""
    src = tmp_path / "src"
    shutil.copytree(os.path.join(SRC, "berth"), src / "berth",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, PYTHONPATH=str(src))
    subprocess.run(["/usr/bin/python3", "-m", "berth.runtime.install", "--prefix",
                    str(tmp_path / "prefix")], check=True, env=env, capture_output=True)
    return src, tmp_path / "prefix" / "bin" / "berth-oci"


def version(launcher):
    out = subprocess.run([str(launcher), "--version"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()[0]


def test_bundle_holds_every_runtime_module(tmp_path):
    import marshal

    path = tmp_path / "bundle"
    install.write_bundle(os.path.abspath(SRC), str(path))
    blob = path.read_bytes()
    table = marshal.loads(blob[8:8 + int.from_bytes(blob[:8], "little")])
    for name in ("berth", "berth.errors", "berth.runtime.main", "berth.runtime.verbs.run",
                 "berth.spec.runtime", "berth.sys.linux", "berth.cgroups.v1"):
        assert name in table
    assert table["berth.runtime"][4] is True and table["berth.runtime.main"][4] is False


def test_launcher_uses_the_bundle_and_falls_back_to_edited_sources(installed):
    src, launcher = installed
    assert version(launcher) == "berth-oci version 0.1.0"
    main = src / "berth" / "runtime" / "main.py"
    main.write_text(main.read_text().replace('VERSION = "0.1.0"', 'VERSION = "9.9.9"'))
    # The bundled copy is stale now: the edited source must win.
    assert version(launcher) == "berth-oci version 9.9.9"


def test_launcher_runs_from_source_without_a_bundle(installed):
    src, launcher = installed
    os.unlink(launcher.parent.parent / "lib" / "berth" / "berth-oci.bundle")
    assert version(launcher) == "berth-oci version 0.1.0"


def test_only_login_runs_outside_the_fork_server():
    from berth.cli.launch import _local

    assert _local(["login", "reg.example"])
    assert _local(["--root", "/x", "-D", "login"])
    assert _local(["--root=/x", "login"])
    assert not _local(["--root", "login", "ps"])  # "login" is --root's value here
    assert not _local(["run", "--rm", "img", "login"])
    assert not _local([])
