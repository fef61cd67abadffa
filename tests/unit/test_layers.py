"""Imports point down only (docs/ARCHITECTURE.md): each package may import the ones listed."""

import ast
import os

SRC = os.path.join(os.path.dirname(__file__), "..", "..", "src", "berth")

ALLOWED = {
    "errors": set(),
    "flags": {"errors"},
    "units": {"errors"},
    "events": {"errors"},
    "sys": {"errors"},
    "spec": {"errors", "sys"},
    "cgroups": {"errors", "sys", "spec"},
    "runtime": {"errors", "sys", "spec", "cgroups", "units"},
    "content": {"errors", "spec"},
    "metadata": {"errors", "spec"},
    "snapshots": {"errors", "sys", "spec", "metadata"},
    "registry": {"errors", "spec", "content", "images"},
    "images": {"errors", "sys", "spec", "content", "metadata", "snapshots", "registry",
               "events"},
    "network": {"errors", "units", "sys", "spec", "metadata", "events"},
    "engine": {"errors", "sys", "spec", "content", "metadata", "snapshots", "images",
               "flags", "units", "network", "events"},
    # cli -> sys: the launcher's client of its fork server (sys/forkserver.py).
    "cli": {"errors", "sys", "spec", "content", "metadata", "snapshots", "registry", "images",
            "engine", "cli", "flags", "units", "events"},
}


def _berth_imports(path):
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "berth" and node.level == 0:
            names = [f"berth.{a.name}" for a in node.names  # from berth import events
                     if not a.name.startswith("_")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "berth" and len(parts) > 1:
                yield parts[1], node.lineno


def test_imports_point_down():
    wrong = []
    for package, allowed in ALLOWED.items():
        base = os.path.join(SRC, package)
        paths = [base + ".py"] if os.path.isfile(base + ".py") else [
            os.path.join(d, f) for d, _, files in os.walk(base) for f in files
            if f.endswith(".py")]
        for path in paths:
            for target, line in _berth_imports(path):
                if target != package and target not in allowed:
                    wrong.append(f"{os.path.relpath(path, SRC)}:{line} imports berth.{target}")
    assert wrong == []
