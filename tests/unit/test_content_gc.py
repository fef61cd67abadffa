"""GC and check: what images and leases reference is kept, the rest goes; check's reports."""

import json
import os

import pytest

from berth.content import gc
from berth.content.digest import digest_bytes
from berth.content.store import ContentStore
from berth.metadata import Metadata

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


@pytest.fixture
def env(tmp_path):
    md = Metadata(str(tmp_path))
    yield ContentStore(str(tmp_path)), md
    md.close()


def desc(store, data, media_type):
    return {"mediaType": media_type, "digest": store.put(data), "size": len(data)}


def make_image(store, layers=(b"layer-a", b"layer-b"), manifest_type=OCI_MANIFEST):
    """An image config, its layers and a manifest; returns (manifest descriptor, parts)."""
    layer_descs = [desc(store, data, LAYER) for data in layers]
    diff_ids = [digest_bytes(b"diff-" + data) for data in layers]
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    config_desc = desc(store, config, "application/vnd.oci.image.config.v1+json")
    manifest = json.dumps({"schemaVersion": 2, "mediaType": manifest_type,
                           "config": config_desc, "layers": layer_descs}).encode()
    return desc(store, manifest, manifest_type), [config_desc] + layer_descs, diff_ids


def make_index(store, manifests, index_type=OCI_INDEX):
    data = json.dumps({"schemaVersion": 2, "mediaType": index_type,
                       "manifests": manifests}).encode()
    return desc(store, data, index_type)


def test_gc_keeps_referenced_and_deletes_the_rest(env):
    store, md = env
    m1, parts1, _ = make_image(store)
    m2, parts2, _ = make_image(store, layers=(b"layer-c",), manifest_type=DOCKER_MANIFEST)
    absent = {"mediaType": OCI_MANIFEST, "digest": digest_bytes(b"arm64 manifest"), "size": 3}
    index = make_index(store, [m1, absent])
    md.put_image("docker.io/library/one:latest", index)
    md.put_image("docker.io/library/two:latest", make_index(store, [m2], DOCKER_LIST))
    leased = store.put(b"being pulled")
    md.add_lease("pull-9", [leased])
    odd = desc(store, b"not json at all", "application/vnd.example.thing")
    md.put_image("example.com/odd:1", odd)
    garbage = [store.put(b"garbage-1"), store.put(b"garbage-2")]

    keep = gc.referenced(store, md)
    wanted = {index["digest"], m1["digest"], m2["digest"], leased, odd["digest"]}
    wanted |= {p["digest"] for p in parts1 + parts2}
    assert wanted <= keep
    assert not set(garbage) & keep

    assert gc.collect(store, md) == {"blobs": 2, "bytes": 2 * len(b"garbage-1")}
    remaining = set(store.digests())
    assert wanted <= remaining
    assert not set(garbage) & remaining
    assert gc.check(store, md) == []

    md.remove_lease("pull-9")
    md.delete_image("docker.io/library/two:latest")
    gc.collect(store, md)
    remaining = set(store.digests())
    assert leased not in remaining and m2["digest"] not in remaining
    assert m1["digest"] in remaining


def test_collect_counts_blobs_and_bytes(env):
    store, md = env
    md.put_image("a", desc(store, b"kept", "application/octet-stream"))
    store.put(b"12345")
    store.put(b"1234567")
    assert gc.collect(store, md) == {"blobs": 2, "bytes": 12}
    assert gc.collect(store, md) == {"blobs": 0, "bytes": 0}


def test_collect_prunes_snapshots_with_chain_ids(env):
    store, md = env
    manifest, _, diff_ids = make_image(store)
    md.put_image("img", manifest)

    class Snapshotter:
        keep = None

        def prune(self, keep):
            Snapshotter.keep = keep
            return 4

    result = gc.collect(store, md, Snapshotter(), keep_snapshots={"container-1"})
    assert result["snapshots"] == 4
    chain2 = digest_bytes(f"{diff_ids[0]} {diff_ids[1]}".encode())
    assert Snapshotter.keep == {diff_ids[0], chain2, "container-1"}


def test_check_reports_corrupted_blob(env):
    store, md = env
    d = store.put(b"precious")
    p = store.path(d)
    os.chmod(p, 0o644)
    with open(p, "r+b") as f:
        f.write(b"P")
    assert gc.check(store, md) == [f"blob {d}: content does not match its digest"]


def test_check_reports_missing_layer_and_target(env):
    store, md = env
    manifest, parts, _ = make_image(store)
    md.put_image("img", make_index(store, [manifest]))
    store.delete(parts[1]["digest"])
    md.put_image("ghost", {"mediaType": OCI_MANIFEST, "digest": digest_bytes(b"none"),
                           "size": 4})
    problems = gc.check(store, md)
    assert problems == [
        f"image ghost: {OCI_MANIFEST} {digest_bytes(b'none')} is missing",
        f"manifest {manifest['digest']}: {LAYER} {parts[1]['digest']} is missing",
    ]


def test_check_reports_size_mismatch_and_bad_json(env):
    store, md = env
    d = store.put(b"{not json")
    md.put_image("broken", {"mediaType": OCI_MANIFEST, "digest": d, "size": 99})
    problems = gc.check(store, md)
    assert any("has 9 bytes, the descriptor says 99" in p for p in problems)
    assert any("is not valid JSON" in p for p in problems)


def test_check_reports_stray_ingests(env):
    store, md = env
    w = store.writer("old-pull")
    w.write(b"partial")
    w.close()
    assert gc.check(store, md) == []  # fresh: a writer may come back
    ingest = os.path.join(store.root, "ingest", "old-pull")
    old = os.stat(ingest).st_mtime - 2 * gc.STRAY_AGE
    for path in (ingest, os.path.join(ingest, "data")):
        os.utime(path, (old, old))
    problems = gc.check(store, md)
    assert len(problems) == 1 and problems[0].startswith("stray ingest old-pull: 7 bytes")
