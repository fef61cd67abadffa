"""berth.registry without a network: challenges, scopes, tokens (fake token server),
the credentials file, and the mapping of registry answers to berth errors."""
import base64
import json
import os
import stat

import pytest

from berth.errors import InvalidArgument, NotFound, PermissionDenied, SystemFailure
from berth.registry import auth, credentials, errors
from berth.registry.client import Client, _retry_after, endpoint_host, is_loopback
from berth.registry.errors import DigestMismatch

# -- challenges and scopes ----------------------------------------------------------------

def test_parse_bearer_challenge():
    header = ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
              'scope="repository:samalba/my-app:pull,push"')
    assert auth.parse_challenges(header) == [auth.Challenge("bearer", {
        "realm": "https://auth.docker.io/token", "service": "registry.docker.io",
        "scope": "repository:samalba/my-app:pull,push"})]


def test_parse_several_challenges_and_odd_spacing():
    header = 'Basic realm="Registry Realm", BEARER  Realm = tok , error="insufficient_scope"'
    assert auth.parse_challenges(header) == [
        auth.Challenge("basic", {"realm": "Registry Realm"}),
        auth.Challenge("bearer", {"realm": "tok", "error": "insufficient_scope"})]


def test_parse_challenge_escapes_and_lists():
    assert auth.parse_challenges(['Basic realm="a \\"b\\" c"', "Bearer realm=x"]) == [
        auth.Challenge("basic", {"realm": 'a "b" c'}), auth.Challenge("bearer", {"realm": "x"})]
    assert auth.parse_challenges(None) == []
    assert auth.parse_challenges("") == []
    with pytest.raises(InvalidArgument, match="unterminated"):
        auth.parse_challenges('Bearer realm="open')


def test_pick_prefers_bearer():
    cs = auth.parse_challenges('Basic realm=a, Bearer realm=b')
    assert auth.pick(cs).scheme == "bearer"
    assert auth.pick(auth.parse_challenges("Negotiate")) is None


def test_scope():
    assert auth.scope("library/busybox") == "repository:library/busybox:pull"
    assert auth.scope("a/b", ("push", "pull")) == "repository:a/b:pull,push"
    assert auth.scope("a/b", "push,pull,push") == "repository:a/b:pull,push"
    with pytest.raises(InvalidArgument):
        auth.scope("", ("pull",))


def test_token_url():
    c = auth.Challenge("bearer", {"realm": "https://auth.example/token", "service": "reg"})
    assert auth.token_url(c, ["repository:a/b:pull,push", "repository:c:pull"]) == (
        "https://auth.example/token?service=reg&scope=repository%3Aa%2Fb%3Apull%2Cpush"
        "&scope=repository%3Ac%3Apull")


# -- tokens -------------------------------------------------------------------------------

class FakeTokenServer:
    def __init__(self, status=200, doc=None):
        self.calls = []
        self.status = status
        self.doc = doc if doc is not None else {"token": "t1", "expires_in": 300}

    def __call__(self, url, headers):
        self.calls.append((url, headers))
        return self.status, json.dumps(self.doc).encode()


def test_authenticator_fetches_and_caches_tokens():
    clock = [100.0]
    server = FakeTokenServer()
    a = auth.Authenticator(("u", "p"), auth.TokenCache(clock=lambda: clock[0]))
    assert a.header(["repository:a:pull"], server) is None  # not challenged yet
    assert a.challenged(auth.parse_challenges('Bearer realm="http://t/token",service="s"'))
    assert a.header(["repository:a:pull"], server) == "Bearer t1"
    assert a.header(["repository:a:pull"], server) == "Bearer t1"
    assert len(server.calls) == 1
    url, headers = server.calls[0]
    assert url == "http://t/token?service=s&scope=repository%3Aa%3Apull"
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"u:p").decode()
    a.header(["repository:a:pull,push"], server)  # another scope, another token
    assert len(server.calls) == 2
    clock[0] += 300  # expired
    a.header(["repository:a:pull"], server)
    assert len(server.calls) == 3
    a.forget(["repository:a:pull"])
    a.header(["repository:a:pull"], server)
    assert len(server.calls) == 4


def test_token_access_token_and_default_expiry():
    clock = [0.0]
    server = FakeTokenServer(doc={"access_token": "at"})
    a = auth.Authenticator(None, auth.TokenCache(clock=lambda: clock[0]))
    a.challenged([auth.Challenge("bearer", {"realm": "http://t/"})])
    assert a.header([], server) == "Bearer at"
    assert "Authorization" not in server.calls[0][1]
    clock[0] = auth.DEFAULT_EXPIRES_IN - 1
    a.header([], server)
    assert len(server.calls) == 2  # renewed a little before the 60 s are up


def test_token_server_errors():
    c = auth.Challenge("bearer", {"realm": "http://t/token"})
    with pytest.raises(PermissionDenied, match="^unauthorized: incorrect username or password$"):
        auth.fetch_token(FakeTokenServer(401), c, [], ("u", "bad"))
    with pytest.raises(PermissionDenied, match="authentication required"):
        auth.fetch_token(FakeTokenServer(401), c, [], None)
    with pytest.raises(SystemFailure, match="no token"):
        auth.fetch_token(FakeTokenServer(doc={"nothing": 1}), c, [])
    with pytest.raises(SystemFailure, match="answered 500"):
        auth.fetch_token(FakeTokenServer(500), c, [])
    with pytest.raises(InvalidArgument, match="no realm"):
        auth.fetch_token(FakeTokenServer(), auth.Challenge("bearer"), [])


def test_basic_challenge_needs_credentials():
    a = auth.Authenticator(None)
    assert not a.challenged(auth.parse_challenges('Basic realm="r"'))
    b = auth.Authenticator(("u", "p"))
    assert b.challenged(auth.parse_challenges('Basic realm="r"'))
    assert b.header(["repository:x:pull"], None) == auth.basic_header("u", "p")


# -- credentials --------------------------------------------------------------------------

def test_credentials_round_trip(tmp_path):
    path = tmp_path / "cfg" / "auth.json"
    store = credentials.Store(str(path), docker_config="")
    assert store.lookup("reg:5000") is None
    store.save("reg:5000", "alice", "pa:ss")
    store.save("docker.io", "bob", "pw")
    assert store.lookup("reg:5000") == ("alice", "pa:ss")
    assert store.lookup("docker.io") == ("bob", "pw")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert doc == {"auths": {"reg:5000": {"auth": base64.b64encode(b"alice:pa:ss").decode()},
                             "docker.io": {"auth": base64.b64encode(b"bob:pw").decode()}}}
    store.save("reg:5000", "alice", "new")
    assert store.lookup("reg:5000") == ("alice", "new")
    store.remove("reg:5000")
    assert store.lookup("reg:5000") is None
    with pytest.raises(NotFound, match="^not logged in to reg:5000$"):
        store.remove("reg:5000")


def test_credentials_read_dockers_file(tmp_path):
    docker = tmp_path / "config.json"
    docker.write_text(json.dumps({"auths": {
        "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:pw").decode()},
        "http://reg.example:5000/": {"username": "u", "password": "p"},
        "empty.example": {}}, "credsStore": "desktop"}))
    store = credentials.Store(str(tmp_path / "berth.json"), docker_config=str(docker))
    assert store.lookup("docker.io") == ("hub", "pw")
    assert store.lookup("index.docker.io") == ("hub", "pw")
    assert store.lookup("reg.example:5000") == ("u", "p")
    assert store.lookup("empty.example") is None
    with pytest.raises(NotFound, match="use docker logout instead"):
        store.remove("docker.io")
    store.save("docker.io", "mine", "x")  # berth's own file wins
    assert store.lookup("docker.io") == ("mine", "x")
    assert json.loads(docker.read_text())["auths"]["https://index.docker.io/v1/"]


def test_credentials_bad_files(tmp_path):
    path = tmp_path / "auth.json"
    store = credentials.Store(str(path), docker_config="")
    path.write_text("{not json")
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        store.lookup("x")
    path.write_text(json.dumps({"auths": {"x": {"auth": "!!!"}}}))
    with pytest.raises(InvalidArgument, match=r"auths\['x'\]: auth is not base64"):
        store.lookup("x")
    path.write_text(json.dumps({"auths": {"x": {"auth": base64.b64encode(b"nocolon").decode()}}}))
    with pytest.raises(InvalidArgument, match="user:password"):
        store.lookup("x")


def test_default_paths(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "dock"))
    assert credentials.default_path() == str(tmp_path / "xdg" / "berth" / "auth.json")
    assert credentials.docker_path() == str(tmp_path / "dock" / "config.json")


def test_module_lookup_uses_default_files(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "dock"))
    assert credentials.lookup("reg:5000") is None
    credentials.Store().save("reg:5000", "u", "p")
    assert credentials.lookup("reg:5000") == ("u", "p")
    assert Client("reg:5000").auth.creds == ("u", "p")


def test_client_reads_credentials_store(tmp_path):
    store = credentials.Store(str(tmp_path / "a.json"), docker_config="")
    store.save("127.0.0.1:5000", "u", "p")
    assert Client("127.0.0.1:5000", credentials=store).auth.creds == ("u", "p")
    assert Client("127.0.0.1:5000", credentials=False).auth.creds is None
    assert Client("127.0.0.1:5000", credentials=("a", "b")).auth.creds == ("a", "b")


# -- errors and hosts ---------------------------------------------------------------------

def body(code, message):
    return json.dumps({"errors": [{"code": code, "message": message, "detail": {}}]}).encode()


@pytest.mark.parametrize("status,raw,kind,cls,text", [
    (401, body("UNAUTHORIZED", "authentication required"), None, PermissionDenied,
     "op: unauthorized: authentication required"),
    (401, b"", None, PermissionDenied, "op: unauthorized: authentication required"),
    (403, b"", None, PermissionDenied, "op: denied: requested access to the resource is denied"),
    (404, body("MANIFEST_UNKNOWN", "manifest unknown"), "manifest", NotFound,
     "op: manifest unknown: manifest unknown"),
    (404, b"", "manifest", NotFound, "op: manifest unknown: manifest unknown"),
    (404, b"", "blob", NotFound, "op: blob unknown: blob unknown to registry"),
    (404, body("NAME_UNKNOWN", "repository name not known to registry"), "repository",
     NotFound, "op: name unknown: repository name not known to registry"),
    (429, b"", None, SystemFailure, "op: toomanyrequests: too many requests"),
    (400, body("DIGEST_INVALID", "provided digest did not match uploaded content"), None,
     InvalidArgument, "op: digest invalid: provided digest did not match uploaded content"),
    (500, b"<html>oops</html>", None, SystemFailure, "op: registry answered 500 Oops"),
])
def test_error_mapping(status, raw, kind, cls, text):
    err = errors.from_status(status, raw, "op", kind=kind, reason="Oops")
    assert type(err) is cls and str(err) == text


def test_connection_error_mapping():
    err = errors.from_connection_error(ConnectionRefusedError(111, "Connection refused"),
                                       "ping reg", "reg:5000")
    assert isinstance(err, SystemFailure) and str(err) == "ping reg: reg:5000: Connection refused"
    assert err.errno == 111


def test_digest_mismatch_is_contents():
    from berth.content import digest

    assert DigestMismatch is digest.DigestMismatch


def test_bad_digest_is_named():
    client = Client("127.0.0.1:1", credentials=False)
    with pytest.raises(InvalidArgument, match=r"^check blob sha256:xyz in 127\.0\.0\.1:1/a: "):
        client.has_blob("a", "sha256:xyz")


def test_hosts_and_schemes():
    assert is_loopback("localhost:5000") and is_loopback("127.0.0.1") and is_loopback("127.1.2.3:80")
    assert is_loopback("[::1]:5000") and not is_loopback("registry.example:5000")
    assert not is_loopback("10.0.0.1")
    assert endpoint_host("docker.io") == "registry-1.docker.io"
    assert Client("localhost:5000", credentials=False).base == "http://localhost:5000"
    assert Client("reg.example", credentials=False).base == "https://reg.example"
    assert Client("reg.example", credentials=False, insecure=True).base == "http://reg.example"
    assert Client("docker.io", credentials=False).base == "https://registry-1.docker.io"
    with pytest.raises(InvalidArgument):
        Client("bad/domain", credentials=False)


def test_retry_after():
    assert _retry_after("2") == 2.0
    assert _retry_after("9999") == 10.0
    assert _retry_after(None) is None
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None
