"""berth.registry.client against Debian's docker-registry on loopback (no auth, htpasswd,
token auth), through a proxy that cuts or corrupts downloads, and against small stub
servers for what a real registry will not do on demand (ignored Range, 503, 429,
redirects to another host)."""
import hashlib
import io
import json
import os
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from berth.errors import NotFound, PermissionDenied, SystemFailure
from berth.registry import credentials
from berth.registry.client import MEDIA_OCI_MANIFEST, Client
from berth.registry.errors import DigestMismatch
from tests.integration.registry import FakeWriter, Proxy, free_port, serve

FAST = {"backoff": (0.01, 0.02, 0.04)}


@pytest.fixture(scope="module")
def registry():
    yield from serve()


@pytest.fixture(scope="module")
def basic_registry():
    yield from serve("htpasswd")


@pytest.fixture(scope="module")
def token_registry():
    yield from serve("token")


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(data, media_type="application/vnd.oci.image.layer.v1.tar"):
    return {"mediaType": media_type, "digest": sha(data), "size": len(data)}


class Image:
    """Random layers, a config and an OCI manifest naming them."""

    def __init__(self, sizes=(300_000, 50_000)):
        self.layers = [os.urandom(n) for n in sizes]
        self.config = json.dumps({"architecture": "amd64", "os": "linux",
                                  "rootfs": {"type": "layers", "diff_ids": [
                                      sha(b) for b in self.layers]}}).encode()
        self.config_desc = descriptor(self.config, "application/vnd.oci.image.config.v1+json")
        self.layer_descs = [descriptor(b) for b in self.layers]
        self.manifest = json.dumps({
            "schemaVersion": 2, "mediaType": MEDIA_OCI_MANIFEST,
            "config": self.config_desc, "layers": self.layer_descs}).encode()
        self.digest = sha(self.manifest)
        self.blobs = {sha(b): b for b in [self.config, *self.layers]}

    def descs(self):
        return [self.config_desc, *self.layer_descs]

    def push(self, client, repo, tag="latest", chunk_size=None):
        pushed = [client.push_blob(repo, d, lambda d=d: io.BytesIO(self.blobs[d["digest"]]),
                                   chunk_size=chunk_size) for d in self.descs()]
        digest = client.put_manifest(repo, tag, self.manifest, MEDIA_OCI_MANIFEST)
        assert digest == self.digest
        return pushed

    def pull(self, client, repo, ref="latest"):
        data, media_type, digest = client.get_manifest(repo, ref)
        assert (data, media_type, digest) == (self.manifest, MEDIA_OCI_MANIFEST, self.digest)
        for d in json.loads(data)["layers"] + [json.loads(data)["config"]]:
            w = FakeWriter()
            assert client.fetch_blob(repo, d, w) == d["digest"]
            assert w.committed and bytes(w.data) == self.blobs[d["digest"]]


def repo_name(prefix="test"):
    return f"{prefix}/r{uuid.uuid4().hex[:10]}"


# -- no auth ------------------------------------------------------------------------------

def test_ping(registry):
    Client(registry.domain, credentials=False).ping()


def test_push_pull_by_tag_and_digest(registry):
    client = Client(registry.domain, credentials=False)
    img, repo = Image(), repo_name()
    assert img.push(client, repo) == [True, True, True]
    img.pull(client, repo, "latest")
    img.pull(client, repo, img.digest)
    assert client.has_blob(repo, img.layer_descs[0]["digest"])


def test_push_by_digest(registry):
    client = Client(registry.domain, credentials=False)
    img, repo = Image(sizes=(1000,)), repo_name()
    for d in img.descs():
        client.push_blob(repo, d, lambda d=d: io.BytesIO(img.blobs[d["digest"]]))
    assert client.put_manifest(repo, img.digest, img.manifest, MEDIA_OCI_MANIFEST) == img.digest
    img.pull(client, repo, img.digest)


def test_repush_skips_existing_blobs(registry):
    proxy = Proxy(registry.port)
    try:
        client = Client(proxy.domain, credentials=False)
        img, repo = Image(), repo_name()
        img.push(client, repo)
        before = len(proxy.heads)
        assert img.push(client, repo) == [False, False, False]
        lines = [h.split("\r\n", 1)[0] for h in proxy.heads[before:]]
        assert not any(line.startswith(("POST", "PATCH")) for line in lines), lines
        assert sum(line.startswith("HEAD ") for line in lines) == 3
    finally:
        proxy.close()


def test_cross_repository_mount(registry):
    client = Client(registry.domain, credentials=False)
    img, src, dst = Image(sizes=(2000,)), repo_name(), repo_name()
    img.push(client, src)
    digest = img.layer_descs[0]["digest"]
    assert not client.has_blob(dst, digest)
    assert client.mount_blob(dst, digest, src) is True
    assert client.has_blob(dst, digest)
    unknown = sha(b"never pushed " + os.urandom(8))
    assert client.mount_blob(dst, unknown, src) is False


def test_chunked_upload(registry):
    proxy = Proxy(registry.port)
    try:
        client = Client(proxy.domain, credentials=False)
        img, repo = Image(sizes=(200_000,)), repo_name()
        seen = []
        d = img.layer_descs[0]
        assert client.push_blob(repo, d, lambda: io.BytesIO(img.layers[0]),
                                progress=lambda done, total: seen.append((done, total)),
                                chunk_size=64 * 1024)
        patches = [h for h in proxy.heads if h.startswith("PATCH ")]
        ranges = [line.split(":", 1)[1].strip() for h in patches for line in h.split("\r\n")
                  if line.lower().startswith("content-range:")]
        assert ranges == ["0-65535", "65536-131071", "131072-196607", "196608-199999"]
        assert seen[-1] == (200_000, 200_000)
        w = FakeWriter()
        client.fetch_blob(repo, d, w)
        assert bytes(w.data) == img.layers[0]
    finally:
        proxy.close()


def test_list_tags(registry):
    client = Client(registry.domain, credentials=False)
    img, repo = Image(sizes=(100,)), repo_name()
    img.push(client, repo, "v1")
    for tag in ("v2", "latest"):
        client.put_manifest(repo, tag, img.manifest, MEDIA_OCI_MANIFEST)
    assert sorted(client.list_tags(repo)) == ["latest", "v1", "v2"]


def test_not_found_messages(registry):
    client = Client(registry.domain, credentials=False)
    img, repo = Image(sizes=(100,)), repo_name()
    img.push(client, repo)
    with pytest.raises(NotFound, match=r"^get manifest 127\.0\.0\.1:\d+/test/r\w+:nope: "
                                       r"manifest unknown"):
        client.get_manifest(repo, "nope")
    missing = descriptor(b"missing blob")
    with pytest.raises(NotFound, match="blob unknown"):
        client.fetch_blob(repo, missing, FakeWriter())
    with pytest.raises(NotFound, match="name unknown"):
        client.list_tags(repo_name("nobody"))
    assert not client.has_blob(repo, missing["digest"])


def test_parallel_fetches_share_one_client(registry):
    client = Client(registry.domain, credentials=False)
    img, repo = Image(sizes=(400_000, 300_000, 200_000, 100_000)), repo_name()
    img.push(client, repo)
    results, errors = {}, []

    def fetch(d):
        try:
            w = FakeWriter()
            client.fetch_blob(repo, d, w)
            results[d["digest"]] = bytes(w.data)
        except Exception as err:  # noqa: BLE001  (reported below)
            errors.append(err)

    threads = [threading.Thread(target=fetch, args=(d,)) for d in img.descs()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert results == img.blobs


def test_content_store_writer(registry, tmp_path):
    store_mod = pytest.importorskip("berth.content.store")
    client = Client(registry.domain, credentials=False)
    img, repo = Image(sizes=(300_000,)), repo_name()
    img.push(client, repo)
    store = store_mod.ContentStore(str(tmp_path))
    d = img.layer_descs[0]
    with store.writer(f"pull-{d['digest']}", d["digest"], d["size"]) as w:
        client.fetch_blob(repo, d, w)
    assert store.read(d["digest"]) == img.layers[0]


# -- resume and wrong bytes ---------------------------------------------------------------

class Writers:
    """Writers for one blob: a FakeWriter, or the content store's when it is there."""

    def __init__(self, kind, tmp_path):
        self.kind = kind
        self.store = None
        if kind == "store":
            self.store = pytest.importorskip("berth.content.store").ContentStore(str(tmp_path))

    def new(self, d):
        if self.store is None:
            return FakeWriter()
        return self.store.writer(f"pull-{d['digest']}", d["digest"], d["size"])

    def content(self, w, d):
        return bytes(w.data) if self.store is None else self.store.read(d["digest"])

    def nothing_kept(self, w, d):
        if self.store is None:
            return not w.committed and w.aborted and not w.data
        return not self.store.has(d["digest"]) and not self.store.ingests()


@pytest.fixture(params=["fake", "store"])
def writers(request, tmp_path):
    return Writers(request.param, tmp_path)


def test_fetch_resumes_with_range_after_cut(registry, writers):
    client = Client(registry.domain, credentials=False)
    img, repo = Image(sizes=(1_000_000,)), repo_name()
    img.push(client, repo)
    proxy = Proxy(registry.port, cut_after=150_000, cuts=2)
    try:
        pc = Client(proxy.domain, credentials=False, **FAST)
        d = img.layer_descs[0]
        seen = []
        with writers.new(d) as w:
            assert pc.fetch_blob(repo, d, w, progress=lambda n, t: seen.append(n)) == d["digest"]
        assert writers.content(w, d) == img.layers[0]
        gets = [h for h in proxy.heads if h.startswith("GET ")]
        ranges = [line for h in gets for line in h.split("\r\n")
                  if line.lower().startswith("range:")]
        assert ranges == ["Range: bytes=150000-", "Range: bytes=300000-"]
        assert [a.split()[1] for a in proxy.answers] == ["200", "206", "206"]
        assert seen[-1] == 1_000_000
    finally:
        proxy.close()


def test_fetch_resumes_a_closed_ingest(registry, tmp_path):
    """A download that gave up keeps its bytes; the next fetch starts where it stopped."""
    writers = Writers("store", tmp_path)
    client = Client(registry.domain, credentials=False)
    img, repo = Image(sizes=(500_000,)), repo_name()
    img.push(client, repo)
    d = img.layer_descs[0]
    # The first download is cut after 200 000 bytes, the second before any: with one try
    # and no progress the fetch gives up, and the writer keeps what it has.
    proxy = Proxy(registry.port, cut_after=[200_000, 0])
    try:
        pc = Client(proxy.domain, credentials=False, tries=1, **FAST)
        with writers.new(d) as w, pytest.raises(SystemFailure, match=r"^fetch blob "):
            pc.fetch_blob(repo, d, w)
        assert writers.store.ingests()
    finally:
        proxy.close()
    proxy = Proxy(registry.port)
    try:
        with writers.new(d) as w:
            assert w.offset == 200_000
            Client(proxy.domain, credentials=False).fetch_blob(repo, d, w)
        assert "Range: bytes=200000-" in proxy.heads[-1].split("\r\n")
    finally:
        proxy.close()
    assert writers.content(w, d) == img.layers[0]


def test_wrong_bytes_raise_digest_mismatch_and_commit_nothing(registry, writers):
    client = Client(registry.domain, credentials=False)
    img, repo = Image(sizes=(50_000,)), repo_name()
    img.push(client, repo)
    proxy = Proxy(registry.port, corrupt=True)
    try:
        pc = Client(proxy.domain, credentials=False, **FAST)
        d = img.layer_descs[0]
        with writers.new(d) as w, pytest.raises(
                DigestMismatch, match=f"expected {d['digest']}, got sha256:"):
            pc.fetch_blob(repo, d, w)
        assert writers.nothing_kept(w, d)
    finally:
        proxy.close()


# -- htpasswd basic auth ------------------------------------------------------------------

def test_basic_auth_push_pull(basic_registry):
    client = Client(basic_registry.domain, credentials=("alice", "alice-pw"))
    client.ping()
    img, repo = Image(sizes=(5000,)), repo_name()
    img.push(client, repo)
    img.pull(client, repo)
    assert client.list_tags(repo) == ["latest"]


def test_basic_auth_without_credentials_is_unauthorized(basic_registry):
    client = Client(basic_registry.domain, credentials=False)
    client.ping()  # reachable; asks for auth
    with pytest.raises(PermissionDenied, match=r"^get manifest .*: unauthorized: "):
        client.get_manifest("test/any", "latest")


def test_basic_auth_wrong_password(basic_registry):
    client = Client(basic_registry.domain, credentials=("alice", "nope"))
    with pytest.raises(PermissionDenied, match=r"^login to 127\.0\.0\.1:\d+: unauthorized"):
        client.ping()


def test_login_and_logout(basic_registry, tmp_path):
    store = credentials.Store(str(tmp_path / "auth.json"), docker_config="")
    with pytest.raises(PermissionDenied):
        credentials.login(basic_registry.domain, "alice", "wrong", store=store)
    assert store.lookup(basic_registry.domain) is None
    credentials.login(basic_registry.domain, "alice", "alice-pw", store=store)
    assert store.lookup(basic_registry.domain) == ("alice", "alice-pw")
    Client(basic_registry.domain, credentials=store).ping()
    credentials.logout(basic_registry.domain, store=store)
    assert store.lookup(basic_registry.domain) is None
    with pytest.raises(NotFound, match="not logged in"):
        credentials.logout(basic_registry.domain, store=store)


# -- token auth ---------------------------------------------------------------------------

def test_token_auth_push_pull_scopes(token_registry):
    reg, tokens = token_registry
    client = Client(reg.domain, credentials=("alice", "alice-pw"))
    img, repo = Image(sizes=(5000,)), repo_name()
    start = len(tokens.requests)
    img.push(client, repo)
    pushed = tokens.requests[start:]
    assert ("alice", [f"repository:{repo}:pull"]) in pushed  # the first HEAD
    assert ("alice", [f"repository:{repo}:pull,push"]) in pushed
    # Cached: three blobs and a manifest, but one token per scope.
    assert len(pushed) == len({tuple(s) for _, s in pushed})
    reader = Client(reg.domain, credentials=("bob", "bob-pw"))
    start = len(tokens.requests)
    img.pull(reader, repo)
    assert tokens.requests[start:] == [("bob", [f"repository:{repo}:pull"])]


def test_token_auth_mount_asks_for_both_scopes(token_registry):
    reg, tokens = token_registry
    client = Client(reg.domain, credentials=("alice", "alice-pw"))
    img, src, dst = Image(sizes=(1000,)), repo_name(), repo_name()
    img.push(client, src)
    assert client.mount_blob(dst, img.layer_descs[0]["digest"], src)
    assert ("alice", [f"repository:{dst}:pull,push", f"repository:{src}:pull"]) \
        in tokens.requests


def test_token_auth_push_denied_without_push_right(token_registry):
    reg, _ = token_registry
    client = Client(reg.domain, credentials=("bob", "bob-pw"))
    img, repo = Image(sizes=(1000,)), repo_name()
    d = img.layer_descs[0]
    with pytest.raises(PermissionDenied, match=r"^push blob .*: denied: requested access to "
                                               r"the resource is denied$"):
        client.push_blob(repo, d, lambda: io.BytesIO(img.layers[0]))


def test_token_auth_wrong_password(token_registry):
    reg, _ = token_registry
    client = Client(reg.domain, credentials=("alice", "wrong"))
    with pytest.raises(PermissionDenied, match="incorrect username or password"):
        client.ping()


def test_token_login(token_registry, tmp_path):
    reg, tokens = token_registry
    store = credentials.Store(str(tmp_path / "auth.json"), docker_config="")
    credentials.login(reg.domain, "bob", "bob-pw", store=store)
    assert tokens.requests[-1] == ("bob", [])
    assert json.loads((tmp_path / "auth.json").read_text())["auths"] == {
        reg.domain: {"auth": credentials.encode("bob", "bob-pw")}}


# -- stub servers -------------------------------------------------------------------------

class Stub:
    """An HTTP server on 127.0.0.1 answering with ``route(handler) -> (status, headers,
    body)``; ``seen`` keeps (method, path, headers) of every request."""

    def __init__(self, route):
        self.seen = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _any(self):
                stub.seen.append((self.command, self.path, dict(self.headers)))
                status, headers, body = route(self)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_PUT = do_POST = _any

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def close(self):
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


@pytest.fixture
def stub():
    made = []

    def make(route):
        made.append(Stub(route))
        return made[-1]

    yield make
    for s in made:
        s.close()


BLOB = os.urandom(100_000)


def test_range_ignored_restarts_by_skipping(stub):
    s = stub(lambda h: (200, {}, BLOB))
    w = FakeWriter(BLOB[:30_000])
    client = Client(f"127.0.0.1:{s.port}", credentials=False, **FAST)
    assert client.fetch_blob("a/b", descriptor(BLOB), w) == sha(BLOB)
    assert bytes(w.data) == BLOB
    assert s.seen[0][2].get("Range") == "bytes=30000-"


def test_retries_5xx_honouring_retry_after(stub):
    count = []

    def route(h):
        count.append(1)
        if len(count) < 3:
            return 503, {"Retry-After": "0"}, b""
        return 200, {}, BLOB

    s = stub(route)
    w = FakeWriter()
    Client(f"127.0.0.1:{s.port}", credentials=False, **FAST).fetch_blob(
        "a/b", descriptor(BLOB), w)
    assert len(count) == 3 and bytes(w.data) == BLOB


def test_too_many_requests_is_one_clear_line(stub):
    body = json.dumps({"errors": [{"code": "TOOMANYREQUESTS",
                                   "message": "You have reached your pull rate limit."}]})
    s = stub(lambda h: (429, {"Retry-After": "0"}, body.encode()))
    client = Client(f"127.0.0.1:{s.port}", credentials=False, **FAST)
    with pytest.raises(SystemFailure, match=r"^get manifest 127\.0\.0\.1:\d+/a/b:latest: "
                                            r"toomanyrequests: You have reached"):
        client.get_manifest("a/b", "latest")
    assert len(s.seen) == 3


def test_redirect_to_another_host_drops_authorization(stub):
    def route(h):
        if h.headers.get("Host", "").startswith("localhost"):
            return 200, {}, BLOB  # the "blob store"
        if h.headers.get("Authorization") is None:
            return 401, {"WWW-Authenticate": 'Basic realm="stub"'}, b""
        return 307, {"Location": f"http://localhost:{port}/store/blob?sig=1"}, b""

    s = stub(route)
    port = s.port
    w = FakeWriter()
    client = Client(f"127.0.0.1:{port}", credentials=("u", "p"), **FAST)
    assert client.fetch_blob("a/b", descriptor(BLOB), w) == sha(BLOB)
    store_reqs = [r for r in s.seen if r[1].startswith("/store/")]
    assert len(store_reqs) == 1 and "Authorization" not in store_reqs[0][2]
    assert [r for r in s.seen if r[1].startswith("/v2/")][-1][2]["Authorization"].startswith(
        "Basic ")


def test_connection_refused_is_bounded_and_named():
    port = free_port()
    client = Client(f"127.0.0.1:{port}", credentials=False, **FAST)
    with pytest.raises(SystemFailure, match=rf"^ping 127\.0\.0\.1:{port}: 127\.0\.0\.1:{port}: "
                                            "Connection refused"):
        client.ping()
