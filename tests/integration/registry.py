"""Real registries on loopback for the registry client's tests, and the tools around them.

* ``Registry`` - Debian's docker-registry (distribution 2.8) on a free 127.0.0.1 port with a
  generated config.yml and storage in its own temporary directory; no auth, htpasswd
  (bcrypt) basic auth, or token auth against a ``TokenServer``;
* ``TokenServer`` - Docker's token spec on loopback: ``GET /token?service=&scope=`` with
  basic auth checked against its users, answering RS256 JWTs signed with a key made by the
  openssl CLI (the registry trusts the certificate through ``rootcertbundle``, the token
  carries it in ``x5c``). It grants the intersection of what was asked and what the user
  may do, and records every request (user, scopes) for the tests to check;
* ``Proxy`` - a TCP proxy to a registry that cuts, or corrupts, blob downloads after N body
  bytes;
* ``serve(auth)`` - the body of a registry fixture: it stops what it started and removes
  its directories afterwards;
* ``FakeWriter`` - the content store's Writer API in memory.

Only 127.0.0.1 is used; every wait is bounded.
"""
import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

REGISTRY_BIN = "/usr/bin/docker-registry"
SERVICE = "berth-test-registry"
ISSUER = "berth-test-issuer"
USERS = {"alice": "alice-pw", "bob": "bob-pw"}
# What each user may do in every repository (the token server's policy).
POLICY = {"alice": {"pull", "push"}, "bob": {"pull"}, "": set()}

needs_registry = pytest.mark.skipif(not os.access(REGISTRY_BIN, os.X_OK),
                                    reason=f"{REGISTRY_BIN} is not installed")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(argv, **kw):
    return subprocess.run(argv, check=True, capture_output=True, timeout=30, **kw)


def bcrypt_htpasswd(users):
    """htpasswd lines with bcrypt hashes (the only kind docker-registry accepts)."""
    lines = []
    for user, password in users.items():
        if shutil.which("htpasswd"):
            out = run(["htpasswd", "-nbB", user, password]).stdout.decode().strip()
            lines.append(out)
            continue
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
        lines.append(f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))}")
    return "\n".join(lines) + "\n"


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TokenServer:
    """A Docker token server on 127.0.0.1; ``realm`` is its URL. Call ``close()``."""

    def __init__(self, directory, users=USERS, policy=POLICY, expires_in=300):
        self.users = dict(users)
        self.policy = policy
        self.expires_in = expires_in
        self.requests = []  # (user, [scopes]) per token request, in order
        self.key = os.path.join(directory, "token.key")
        self.cert = os.path.join(directory, "token.crt")
        run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=berth-test-token", "-keyout", self.key, "-out", self.cert])
        der = run(["openssl", "x509", "-in", self.cert, "-outform", "DER"]).stdout
        self._x5c = base64.b64encode(der).decode("ascii")
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server._serve(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.realm = f"http://127.0.0.1:{self.port}/token"
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()

    def sign(self, claims):
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        signing_input = (_b64url(json.dumps(header).encode()) + "."
                         + _b64url(json.dumps(claims).encode()))
        sig = run(["openssl", "dgst", "-sha256", "-sign", self.key],
                  input=signing_input.encode()).stdout
        return signing_input + "." + _b64url(sig)

    def _user(self, handler):
        value = handler.headers.get("Authorization") or ""
        if not value.startswith("Basic "):
            return ""
        user, _, password = base64.b64decode(value[6:]).decode().partition(":")
        if self.users.get(user) != password:
            return None
        return user

    def _serve(self, handler):
        from urllib.parse import parse_qs, urlsplit

        parts = urlsplit(handler.path)
        query = parse_qs(parts.query)
        user = self._user(handler)
        scopes = query.get("scope", [])
        self.requests.append((user, scopes))
        if parts.path != "/token" or user is None or query.get("service") != [SERVICE]:
            handler.send_response(401 if user is None else 400)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        allowed = self.policy.get(user, set())
        access = []
        for s in scopes:
            kind, _, rest = s.partition(":")
            name, _, actions = rest.rpartition(":")
            granted = [a for a in actions.split(",") if a in allowed]
            access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        token = self.sign({"iss": ISSUER, "sub": user, "aud": SERVICE, "iat": now,
                           "nbf": now - 30, "exp": now + self.expires_in,
                           "jti": uuid.uuid4().hex, "access": access})
        body = json.dumps({"token": token, "access_token": token,
                           "expires_in": self.expires_in}).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def close(self):
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


class Registry:
    """docker-registry on 127.0.0.1:<port>; ``auth`` None, "htpasswd" or a TokenServer."""

    def __init__(self, auth=None):
        self.dir = tempfile.mkdtemp(prefix="berth-registry-")
        self.proc = None
        self.log = None
        try:
            self._start(auth)
        except BaseException:
            self.close()
            raise

    def _config(self, auth):
        lines = [
            "version: 0.1",
            "log:",
            "  level: error",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.dir}/storage",
            "  delete:",
            "    enabled: true",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
            f"  secret: {uuid.uuid4().hex}",
        ]
        if auth == "htpasswd":
            path = os.path.join(self.dir, "htpasswd")
            with open(path, "w") as f:
                f.write(bcrypt_htpasswd(USERS))
            lines += ["auth:", "  htpasswd:", "    realm: berth-test", f"    path: {path}"]
        elif auth is not None:
            lines += ["auth:", "  token:", f"    realm: {auth.realm}", f"    service: {SERVICE}",
                      f"    issuer: {ISSUER}", f"    rootcertbundle: {auth.cert}"]
        return "\n".join(lines) + "\n"

    def _start(self, auth):
        for _ in range(3):  # the free port may be taken between our probe and the bind
            self.port = free_port()
            self.domain = f"127.0.0.1:{self.port}"
            config = os.path.join(self.dir, "config.yml")
            with open(config, "w") as f:
                f.write(self._config(auth))
            self.log = open(os.path.join(self.dir, "registry.log"), "wb")  # noqa: SIM115
            self.proc = subprocess.Popen([REGISTRY_BIN, "serve", config], stdin=subprocess.DEVNULL,
                                         stdout=self.log, stderr=subprocess.STDOUT)
            if self._wait_ready():
                return
            self._stop()
        with open(os.path.join(self.dir, "registry.log"), "rb") as f:
            raise RuntimeError(f"docker-registry did not start: {f.read()[-2000:]!r}")

    def _wait_ready(self):
        url = f"http://{self.domain}/v2/"
        for _ in range(200):  # 10 s at most
            if self.proc.poll() is not None:
                return False
            try:
                urllib.request.urlopen(url, timeout=1).close()
                return True
            except urllib.error.HTTPError:
                return True  # 401: up, and asking for auth
            except OSError:
                time.sleep(0.05)
        return False

    def _stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if self.log is not None:
            self.log.close()
            self.log = None

    def close(self):
        self._stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Proxy:
    """TCP proxy 127.0.0.1:<port> -> a registry, spoiling blob downloads on request.

    A connection whose first request is ``GET .../blobs/...`` is cut after ``cut_after``
    body bytes of the answer (for the first ``cuts`` such connections; a list gives the
    cut of each download in turn), or, with
    ``corrupt``, gets one body byte flipped. ``heads`` keeps every request head seen.
    """

    def __init__(self, upstream_port, *, cut_after=None, cuts=1, corrupt=False):
        # Without cut_after or corrupt it only passes bytes on and records request heads.
        self.upstream_port = upstream_port
        self.cut_after = cut_after
        self.cuts = cuts
        self.corrupt = corrupt
        self.heads = []
        self.answers = []  # status lines of blob downloads
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = []
        self._open = set()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self.domain = f"127.0.0.1:{self.port}"
        self._spawn(self._accept)

    def _spawn(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        t.start()
        self._threads.append(t)

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._spawn(self._handle, conn)

    def _handle(self, client):
        client.settimeout(10)
        try:
            up = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
        except OSError:
            client.close()
            return
        with self._lock:
            self._open.update((client, up))
        try:
            first = client.recv(65536)
            head = first.split(b"\r\n\r\n", 1)[0]
            with self._lock:
                blob = head.startswith(b"GET ") and b"/blobs/" in head.split(b"\r\n", 1)[0]
                spoil = blob
                cut = None
                if spoil and not self.corrupt:
                    if isinstance(self.cut_after, list):
                        cut = self.cut_after.pop(0) if self.cut_after else None
                    elif self.cut_after is not None and self.cuts > 0:
                        cut = self.cut_after
                        self.cuts -= 1
                    spoil = cut is not None
            self._spawn(self._pump, client, up, first)
            self._answer(up, client, spoil, blob, cut)
        except OSError:
            pass
        finally:
            for s in (client, up):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            with self._lock:
                self._open.difference_update((client, up))

    def _pump(self, src, dst, data):
        """Client -> server, noting each request head (bodies skipped by Content-Length)."""
        buf, body_left = b"", 0
        try:
            while data and not self._stop.is_set():
                dst.sendall(data)
                buf += data
                for _ in range(1000):
                    if body_left:
                        taken = min(body_left, len(buf))
                        buf, body_left = buf[taken:], body_left - taken
                    if body_left or b"\r\n\r\n" not in buf:
                        break
                    head, buf = buf.split(b"\r\n\r\n", 1)
                    text = head.decode("latin-1")
                    with self._lock:
                        self.heads.append(text)
                    for line in text.split("\r\n")[1:]:
                        name, _, value = line.partition(":")
                        if name.strip().lower() == "content-length":
                            body_left = int(value)
                data = src.recv(65536)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)  # the client is done: let the server end too
        except OSError:
            pass

    def _answer(self, up, client, spoil, blob, cut):
        head = b""
        if blob and not spoil:  # a blob download passed on untouched: note its status
            data = up.recv(65536)
            with self._lock:
                self.answers.append(data.split(b"\r\n", 1)[0].decode("latin-1"))
            client.sendall(data)
        body_seen = None  # body bytes passed on, once the head is through
        while not self._stop.is_set():
            data = up.recv(65536)
            if not data:
                return
            if spoil and body_seen is None:
                head += data
                if b"\r\n\r\n" not in head:
                    continue
                status = head.split(b"\r\n", 1)[0].decode("latin-1")
                head_part, data = head.split(b"\r\n\r\n", 1)
                with self._lock:
                    self.answers.append(status)
                client.sendall(head_part + b"\r\n\r\n")
                body_seen = 0
            if spoil and self.corrupt and data and body_seen <= 100 < body_seen + len(data):
                i = 100 - body_seen
                data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
            if spoil and not self.corrupt and body_seen + len(data) >= cut:
                client.sendall(data[:cut - body_seen])
                return  # the caller closes both ends: the download is cut
            if spoil:
                body_seen += len(data)
            client.sendall(data)

    def close(self):
        self._stop.set()
        self._sock.close()
        with self._lock:
            still = list(self._open)
        for s in still:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(5)


def serve(auth=None):
    """A fixture's body: yields a Registry (``auth`` None or "htpasswd"), or for
    ``auth="token"`` a (Registry, TokenServer) pair; afterwards stops and removes them.

    Use as ``@pytest.fixture(scope="module") def registry(): yield from serve()``.
    """
    if not os.access(REGISTRY_BIN, os.X_OK):
        pytest.skip(f"{REGISTRY_BIN} is not installed")
    keys = tempfile.mkdtemp(prefix="berth-token-") if auth == "token" else None
    tokens = reg = None
    try:
        if keys:
            tokens = TokenServer(keys)
            reg = Registry(auth=tokens)
            yield reg, tokens
        else:
            reg = Registry(auth=auth)
            yield reg
    finally:
        if reg is not None:
            reg.close()
        if tokens is not None:
            tokens.close()
        if keys:
            shutil.rmtree(keys, ignore_errors=True)


class FakeWriter:
    """The content store's Writer API in memory, for tests that must not depend on it."""

    def __init__(self, data=b"", committed=False):
        self.data = bytearray(data)
        self.committed = committed
        self.aborted = False
        self.closed = False

    @property
    def offset(self):
        return len(self.data)

    def write(self, data):
        assert not self.committed and not self.aborted
        self.data += data

    def commit(self, expected=None, size=None):
        import hashlib

        from berth.content.digest import DigestMismatch

        actual = "sha256:" + hashlib.sha256(self.data).hexdigest()
        if size is not None and len(self.data) != size:
            raise DigestMismatch("fake ingest", f"{expected} ({size} bytes)",
                            f"{actual} ({len(self.data)} bytes)")
        if expected is not None and actual != expected:
            raise DigestMismatch("fake ingest", expected, actual)
        self.committed = True
        return actual

    def close(self):
        self.closed = True

    def abort(self):
        self.aborted = True
        self.data.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if not self.committed:
            self.close()
