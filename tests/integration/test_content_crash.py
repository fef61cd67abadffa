"""kill -9 a process writing a large blob, again and again: the store stays whole.

Plain processes on a tmp root; nothing here needs root beyond the integration suite's rule.
"""

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from berth.content import gc
from berth.content.digest import hasher
from berth.content.store import ContentStore
from berth.metadata import Metadata

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "src"))
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
SIZE = 64 << 20
KILLS = 6

# Writes the source file into ingest <key> from wherever the ingest stands, then commits,
# saying how far it got after each MiB so that the parent can pick where to kill it.
CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
from berth.content.store import ContentStore
root, source, key, expected, size = sys.argv[2:]
w = ContentStore(root).writer(key, expected, int(size), wait=sys.stdin.readline() == "wait\\n")
print("ready", w.offset, w.committed, flush=True)
if not w.committed:
    with open(source, "rb") as f:
        f.seek(w.offset)
        while True:
            chunk = f.read(64 * 1024)
            if not chunk:
                break
            w.write(chunk)
            if w.offset % (1 << 20) == 0:
                print("at", w.offset, flush=True)
    print("commit", flush=True)
    w.commit()
print("done", flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def children():
    procs = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
        for f in (p.stdin, p.stdout):
            f.close()


@pytest.fixture
def source(tmp_path):
    path = str(tmp_path / "source")
    h = hasher("sha256")
    with open(path, "wb") as f:
        for _ in range(SIZE // (1 << 20)):
            chunk = os.urandom(1 << 20)
            h.update(chunk)
            f.write(chunk)
    return path, "sha256:" + h.hexdigest()


def spawn(children, root, source, key, digest, wait=False):
    p = subprocess.Popen([PYTHON, "-c", CHILD, SRC, root, source, key, digest, str(SIZE)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    children.append(p)
    p.stdin.write("wait\n" if wait else "go\n")
    p.stdin.flush()
    return p


def assert_store_whole(store, md):
    for digest in store.digests():
        assert store.verify(digest), digest
    problems = [p for p in gc.check(store, md) if not p.startswith("stray ingest")]
    assert problems == []


def test_kill_9_while_writing_then_resume(tmp_path, source, children):
    root = str(tmp_path / "root")
    path, digest = source
    store, md = ContentStore(root), Metadata(root)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    offsets = []
    try:
        for _ in range(KILLS):
            p = spawn(children, root, path, "pull-big", digest)
            ready = p.stdout.readline().split()
            assert ready[0] == "ready", (seed, ready)
            offsets.append(int(ready[1]))
            # A random point in the rest of the stream, or (past its end) during the commit.
            target = rng.randrange(offsets[-1], SIZE + (2 << 20))
            for line in p.stdout:
                word = line.split()
                if word[0] != "at" or int(word[1]) >= target:
                    break
            time.sleep(rng.uniform(0, 0.005))
            p.send_signal(signal.SIGKILL)
            p.wait()
            assert_store_whole(store, md)
        # Each resume starts where the killed writer's data ended, never before.
        assert offsets == sorted(offsets), (seed, offsets)

        p = spawn(children, root, path, "pull-big", digest)
        assert p.stdout.readline().startswith("ready"), seed
        # The last writer may still have the end of the stream to write ("at N" lines) and
        # the commit to make ("commit").
        line = p.stdout.readline()
        while line.startswith("at ") or line == "commit\n":
            line = p.stdout.readline()
        assert line == "done\n", seed
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.wait() == 0
        assert store.has(digest) and store.verify(digest)
        assert store.size(digest) == SIZE
        assert store.ingests() == []
        assert_store_whole(store, md)
    finally:
        md.close()


def test_second_process_conflicts_or_waits(tmp_path, source, children):
    root = str(tmp_path / "root")
    path, digest = source
    store = ContentStore(root)
    holder = store.writer("pull-big", digest, SIZE)
    try:
        done = subprocess.run([PYTHON, "-c", CHILD, SRC, root, path, "pull-big", digest,
                               str(SIZE)], input="go\n", capture_output=True, text=True,
                              check=False)
        assert done.returncode != 0
        assert "Conflict: ingest pull-big is in use" in done.stderr
        # A waiting writer blocks until the holder commits, then finds the blob there.
        waiter = spawn(children, root, path, "pull-big", digest, wait=True)
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                holder.write(chunk)
        assert holder.commit() == digest
    finally:
        holder.close()
    assert waiter.stdout.readline().split() == ["ready", str(SIZE), "True"]
    assert waiter.stdout.readline() == "done\n"
    waiter.stdin.write("\n")
    waiter.stdin.flush()
    assert waiter.wait() == 0
    assert store.verify(digest) and store.ingests() == []
