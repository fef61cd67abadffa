"""A registry client for the OCI distribution spec 1.1 (and Docker's registry API v2).

One ``Client`` per registry host. Every request goes through ``_request``, which adds the
Authorization header the registry asked for (auth.py), follows redirects for GET and HEAD
(to other hosts too, without our Authorization there: a blob store must not see a
registry token), and retries connection errors, 429 and 5xx a bounded number of times with
back-off (honouring Retry-After up to a cap). Status codes and error bodies become berth
errors in errors.py only.

Threads: a client may be shared. Each thread keeps its own keep-alive connections; every
blob download opens a connection of its own; the token cache is behind a lock.

Plain HTTP is used for localhost, 127.0.0.0/8, ::1 and registries the caller calls
insecure; HTTPS with the system's CA bundle for everything else.
"""
import http.client
import ipaddress
import json
import ssl
import threading
import time
import urllib.parse

from berth.content.digest import ALGORITHMS, DigestMismatch, digest_bytes, parse_digest
from berth.errors import BerthError, InvalidArgument, PermissionDenied, SystemFailure
from berth.registry import auth as _auth
from berth.registry import errors as _errors

MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_ALL = (MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST, MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST)

BACKOFF = (0.2, 0.4, 0.8)
RETRY_AFTER_CAP = 10.0
MAX_REDIRECTS = 5
MAX_RESUMES = 20           # interrupted downloads of one blob that made progress
MANIFEST_LIMIT = 4 << 20   # Docker's limit for a manifest body
ERROR_BODY_LIMIT = 64 << 10
CHUNK = 1 << 20
_RETRY_STATUS = frozenset((429, 500, 502, 503, 504))
_REDIRECTS = frozenset((301, 302, 303, 307, 308))
_NET_ERRORS = (OSError, http.client.HTTPException)


def endpoint_host(domain):
    """Where a registry's API lives: Docker Hub's is registry-1.docker.io."""
    return "registry-1.docker.io" if domain in ("docker.io", "index.docker.io") else domain


def is_loopback(domain):
    """localhost, 127.0.0.0/8 and ::1, with or without a port."""
    host = domain
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_digest(digest, what):
    try:
        return parse_digest(digest)
    except InvalidArgument as err:
        raise InvalidArgument(f"{what}: {err}") from None


def _is_digest(ref):
    return ":" in ref and ref.split(":", 1)[0] in ALGORITHMS


def _with_query(url, **params):
    return url + ("&" if "?" in url else "?") + urllib.parse.urlencode(params)


def _retry_after(value):
    """Seconds from a Retry-After header (delta-seconds only), capped; None if absent/bad."""
    if not value:
        return None
    try:
        return min(max(float(value.strip()), 0.0), RETRY_AFTER_CAP)
    except ValueError:
        return None


class _Body:
    """At most ``size`` bytes of a file object, reporting progress; http.client reads it."""

    def __init__(self, fileobj, size, progress=None, done=0, total=None):
        self._f = fileobj
        self._left = size
        self._progress = progress
        self._done = done
        self._total = total

    def read(self, n=-1):
        if self._left <= 0:
            return b""
        n = self._left if n is None or n < 0 else min(n, self._left)
        data = self._f.read(n)
        self._left -= len(data)
        self._done += len(data)
        if self._progress and data:
            self._progress(self._done, self._total)
        if not data and self._left > 0:
            raise InvalidArgument(f"upload: source ended {self._left} bytes early")
        return data

    def close(self):
        self._f.close()


class _Response:
    """A response: ``status``, ``headers``; ``body`` (bytes) unless it is being streamed."""

    def __init__(self, resp, conn, url, owned):
        self.status = resp.status
        self.reason = resp.reason
        self.headers = resp.headers
        self.url = url
        self.body = None
        self._resp = resp
        self._conn = conn
        self._owned = owned  # a connection opened for this response alone

    def header(self, name, default=None):
        return self.headers.get(name, default)

    def read(self, n):
        return self._resp.read(n)

    @property
    def remaining(self):
        """Body bytes still due by Content-Length (None when the length is unknown)."""
        return self._resp.length

    def load(self, limit=None):
        """Read the whole body (at most ``limit`` bytes: then the connection is dropped)."""
        if limit is None:
            self.body = self._resp.read()
        else:
            self.body = self._resp.read(limit)
            if not self._resp.isclosed():
                self._conn.close()
        return self.body

    def close(self):
        if self._owned:
            self._conn.close()
        elif not self._resp.isclosed():
            # Unread body: the keep-alive connection cannot carry another request.
            self._conn.close()


class Client:
    """The distribution API of one registry (``domain`` as in a reference: "reg:5000").

    ``credentials``: None reads them from the default credentials store, a (user, password)
    pair is used as is, an object with ``lookup(domain)`` is asked, False means anonymous.
    ``insecure``: None means plain HTTP for loopback hosts only; True/False forces it.
    """

    def __init__(self, domain, *, insecure=None, credentials=None, timeout=30,
                 token_cache=None, tries=3, backoff=BACKOFF):
        if not domain or "/" in domain:
            raise InvalidArgument(f"registry: invalid domain {domain!r}")
        self.domain = domain
        self.host = endpoint_host(domain)
        if insecure is None:
            insecure = is_loopback(self.host)
        self.scheme = "http" if insecure else "https"
        self.base = f"{self.scheme}://{self.host}"
        self.timeout = timeout
        self.tries = max(1, int(tries))
        self.backoff = tuple(backoff) or (0.0,)
        self.auth = _auth.Authenticator(self._resolve_credentials(credentials), token_cache)
        self._ssl = ssl.create_default_context() if self.scheme == "https" else None
        self._local = threading.local()

    def _resolve_credentials(self, credentials):
        if credentials is False:
            return None
        if credentials is None:
            from berth.registry.credentials import Store
            return Store().lookup(self.domain)
        if hasattr(credentials, "lookup"):
            return credentials.lookup(self.domain)
        user, password = credentials
        return (user, password)

    # -- HTTP plumbing -------------------------------------------------------------------

    def _new_conn(self, scheme, netloc):
        if scheme == "https":
            ctx = self._ssl or ssl.create_default_context()
            return http.client.HTTPSConnection(netloc, timeout=self.timeout, context=ctx,
                                               blocksize=CHUNK)
        if scheme != "http":
            raise InvalidArgument(f"registry: unsupported URL scheme {scheme!r}")
        return http.client.HTTPConnection(netloc, timeout=self.timeout, blocksize=CHUNK)

    def _pooled(self, scheme, netloc):
        pool = getattr(self._local, "conns", None)
        if pool is None:
            pool = self._local.conns = {}
        conn = pool.get((scheme, netloc))
        if conn is not None:
            return conn, True
        conn = pool[(scheme, netloc)] = self._new_conn(scheme, netloc)
        return conn, False

    def _drop(self, scheme, netloc, conn):
        conn.close()
        pool = getattr(self._local, "conns", {})
        if pool.get((scheme, netloc)) is conn:
            del pool[(scheme, netloc)]

    def close(self):
        """Close this thread's keep-alive connections."""
        for conn in getattr(self._local, "conns", {}).values():
            conn.close()
        self._local.conns = {}

    def _exchange(self, method, url, headers, body, stream):
        """One request and its response's head; no auth, redirects or retries.

        ``body``: None, bytes, or a callable returning a fresh ``_Body`` (so a retry can
        send it again). With ``stream`` a successful response keeps its body unread on a
        connection of its own; otherwise the body is read into ``.body``.
        """
        parts = urllib.parse.urlsplit(url)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        for _ in range(2):
            if stream:
                conn, reused = self._new_conn(parts.scheme, parts.netloc), False
            else:
                conn, reused = self._pooled(parts.scheme, parts.netloc)
            data = body() if callable(body) else body
            try:
                conn.request(method, target, body=data, headers=headers)
                resp = conn.getresponse()
            except _NET_ERRORS:
                self._drop(parts.scheme, parts.netloc, conn)
                if reused:
                    continue  # the server closed an idle keep-alive connection: once more
                raise
            finally:
                if callable(body):
                    data.close()
            break
        r = _Response(resp, conn, url, owned=stream)
        if not stream or not 200 <= resp.status < 300:
            try:
                r.load(None if 200 <= resp.status < 300 else ERROR_BODY_LIMIT)
            except _NET_ERRORS:
                self._drop(parts.scheme, parts.netloc, conn)
                raise
            if stream:
                conn.close()
        return r

    def _follow(self, method, url, headers, body, stream):
        """``_exchange`` plus redirects of GET and HEAD; Authorization stays on our host."""
        ours = urllib.parse.urlsplit(self.base).netloc
        for _ in range(MAX_REDIRECTS + 1):
            r = self._exchange(method, url, headers, body, stream)
            location = r.header("Location")
            if r.status not in _REDIRECTS or method not in ("GET", "HEAD") or not location:
                return r
            r.close()
            url = urllib.parse.urljoin(url, location)
            if urllib.parse.urlsplit(url).netloc != ours:
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        raise SystemFailure(f"{method} {url}: more than {MAX_REDIRECTS} redirects")

    def _token_get(self, url, headers):
        """GET for the token server: (status, body), retrying connection errors."""
        last = None
        for attempt in range(self.tries):
            if attempt:
                time.sleep(self.backoff[min(attempt - 1, len(self.backoff) - 1)])
            try:
                r = self._exchange("GET", url, headers, None, stream=False)
            except _NET_ERRORS as err:
                last = err
                continue
            if r.status in _RETRY_STATUS and attempt + 1 < self.tries:
                continue
            return r.status, r.body
        host = urllib.parse.urlsplit(url).netloc
        raise _errors.from_connection_error(last, "fetch token", host)

    def _auth_header(self, scopes, what):
        try:
            return self.auth.header(scopes, self._token_get)
        except BerthError as err:
            err.message = f"{what}: {err.message}"
            raise

    def _authed(self, method, url, scopes, headers, body, stream, what):
        """``_follow`` with auth: answer one 401 challenge, or renew a refused token once."""
        r = None
        for round_ in range(2):
            hdrs = dict(headers)
            value = self._auth_header(scopes, what)
            if value:
                hdrs["Authorization"] = value
            r = self._follow(method, url, hdrs, body, stream)
            if r.status != 401 or round_:
                return r
            challenges = _auth.parse_challenges(r.headers.get_all("WWW-Authenticate") or [])
            if not self.auth.challenged(challenges):
                return r
            if value:
                if self.auth.challenge.scheme == "basic":
                    return r  # the password was refused; sending it again will not help
                self.auth.forget(scopes)
            r.close()
        return r

    def _request(self, method, path, *, scopes, what, kind=None, headers=None, body=None,
                 stream=False, ok=(200,)):
        """A request with auth, redirects and retries; a response whose status is in ``ok``.

        Anything else raises the mapped berth error naming ``what``.
        """
        url = path if "://" in path else self.base + path
        headers = dict(headers or {})
        last = None
        delay = 0.0
        for attempt in range(self.tries):
            if attempt:
                time.sleep(delay)
            delay = self.backoff[min(attempt, len(self.backoff) - 1)]
            try:
                r = self._authed(method, url, scopes, headers, body, stream, what)
            except _NET_ERRORS as err:
                last = err
                continue
            if r.status in _RETRY_STATUS and attempt + 1 < self.tries:
                after = _retry_after(r.header("Retry-After"))
                delay = delay if after is None else after
                r.close()
                continue
            if r.status in ok:
                return r
            r.close()
            raise self._error(r, what, kind)
        raise _errors.from_connection_error(last, what, self.domain)

    def _error(self, r, what, kind):
        if r.status == 401:
            challenges = _auth.parse_challenges(r.headers.get_all("WWW-Authenticate") or [])
            if any(c.params.get("error") == "insufficient_scope" for c in challenges):
                return _errors.denied(what)
            if self.auth.creds and self.auth.challenge and not _errors.registry_errors(r.body):
                return PermissionDenied(f"{what}: unauthorized: incorrect username or password")
        return _errors.from_status(r.status, r.body, what, kind=kind, reason=r.reason)

    def _name(self, repo, ref=None):
        if ref is None:
            return f"{self.domain}/{repo}"
        sep = "@" if _is_digest(ref) else ":"
        return f"{self.domain}/{repo}{sep}{ref}"

    # -- the API ---------------------------------------------------------------------------

    def ping(self):
        """GET /v2/: the registry speaks the API; with credentials, they are accepted."""
        what = f"ping {self.domain}"
        r = self._request("GET", "/v2/", scopes=[], what=what, ok=(200, 401))
        if r.status == 401 and self.auth.creds:
            raise self._error(r, f"login to {self.domain}", None)

    def get_manifest(self, repo, ref, accept=MEDIA_ALL):
        """(raw bytes, media type, digest) of a manifest or index, by tag or by digest.

        A digest ``ref`` is verified; for a tag, the registry's Docker-Content-Digest (when
        sent) must match the bytes.
        """
        what = f"get manifest {self._name(repo, ref)}"
        r = self._request("GET", f"/v2/{repo}/manifests/{ref}", scopes=[_auth.scope(repo)],
                          what=what, kind="manifest", stream=True,
                          headers={"Accept": ", ".join(accept)})
        try:
            data = r.load(MANIFEST_LIMIT + 1)
        except _NET_ERRORS as err:
            raise _errors.from_connection_error(err, what, self.domain) from None
        finally:
            r.close()
        if len(data) > MANIFEST_LIMIT:
            raise InvalidArgument(f"{what}: manifest is larger than {MANIFEST_LIMIT} bytes")
        media_type = (r.header("Content-Type") or "").split(";", 1)[0].strip()
        if media_type in ("", "application/json", "text/plain", "application/octet-stream"):
            try:
                media_type = json.loads(data).get("mediaType") or media_type
            except (ValueError, AttributeError):
                pass
        if _is_digest(ref):
            alg, _ = _check_digest(ref, what)
            actual = digest_bytes(data, alg)
            if actual != ref:
                raise DigestMismatch(f"manifest {self._name(repo, ref)}", ref, actual)
            return data, media_type, ref
        digest = digest_bytes(data)
        sent = r.header("Docker-Content-Digest")
        if sent and sent.startswith("sha256:") and sent != digest:
            raise DigestMismatch(f"manifest {self._name(repo, ref)}", sent, digest)
        return data, media_type, digest

    def has_blob(self, repo, digest):
        what = f"check blob {digest} in {self._name(repo)}"
        _check_digest(digest, what)
        r = self._request("HEAD", f"/v2/{repo}/blobs/{digest}", scopes=[_auth.scope(repo)],
                          what=what, kind="blob", ok=(200, 404))
        return r.status == 200

    def fetch_blob(self, repo, descriptor, writer, progress=None):
        """Stream a blob into a content ``writer`` from ``writer.offset``; -> its digest.

        An interrupted download resumes with Range from what the writer holds (a registry
        that ignores Range and answers 200 has the held bytes skipped). The writer verifies
        size and digest at commit; on a mismatch the ingest is aborted and nothing is kept.
        """
        digest = descriptor["digest"]
        size = descriptor.get("size")
        what = f"fetch blob {digest} from {self._name(repo)}"
        _check_digest(digest, what)
        if writer.committed:
            return digest
        path = f"/v2/{repo}/blobs/{digest}"
        stalls = 0
        for _ in range(MAX_RESUMES):
            offset = writer.offset
            if size is not None and offset >= size:
                break
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            r = self._request("GET", path, scopes=[_auth.scope(repo)], what=what, kind="blob",
                              headers=headers, stream=True, ok=(200, 206))
            try:
                skip = self._resume_point(r, offset, what)
                self._copy(r, writer, skip, size, progress)
            except _NET_ERRORS as err:
                stalls = 0 if writer.offset > offset else stalls + 1
                if stalls >= self.tries:
                    raise _errors.from_connection_error(err, what, self.domain) from None
                time.sleep(self.backoff[min(stalls, len(self.backoff) - 1)] if stalls else 0)
                continue
            finally:
                r.close()
            break
        else:
            raise SystemFailure(f"{what}: gave up after {MAX_RESUMES} interrupted downloads")
        try:
            return writer.commit(digest, size)
        except DigestMismatch:
            writer.abort()
            raise

    @staticmethod
    def _resume_point(r, offset, what):
        """How many bytes of this answer the writer already holds (to skip)."""
        if r.status == 200:
            return offset  # Range ignored: the whole blob again
        start = (r.header("Content-Range") or "").replace("bytes", "").strip().split("-", 1)[0]
        if start != str(offset):
            raise SystemFailure(f"{what}: registry answered range {start or '?'}, "
                                f"asked for {offset}")
        return 0

    @staticmethod
    def _copy(r, writer, skip, size, progress):
        while True:
            want = CHUNK
            if skip:
                want = min(want, skip)
            elif size is not None:
                want = min(want, size - writer.offset)
                if want <= 0:
                    return
            data = r.read(want)
            if not data:
                # http.client returns b"" when the peer closes before Content-Length.
                left = r.remaining
                if skip or left:
                    raise http.client.IncompleteRead(b"", skip or left)
                return
            if skip:
                skip -= len(data)
                continue
            writer.write(data)
            if progress:
                progress(writer.offset, size)

    def mount_blob(self, repo, digest, from_repo):
        """Ask the registry to link ``digest`` from ``from_repo``; False if it would not."""
        what = f"mount blob {digest} from {from_repo} into {self._name(repo)}"
        _check_digest(digest, what)
        scopes = [_auth.scope(repo, ("pull", "push")), _auth.scope(from_repo)]
        query = urllib.parse.urlencode({"mount": digest, "from": from_repo})
        r = self._request("POST", f"/v2/{repo}/blobs/uploads/?{query}", scopes=scopes,
                          what=what, kind="repository", ok=(201, 202),
                          headers={"Content-Length": "0"})
        if r.status == 201:
            return True
        # 202: the registry opened an upload instead; cancel it (best effort).
        location = r.header("Location")
        if location:
            try:
                self._request("DELETE", urllib.parse.urljoin(self.base + "/", location),
                              scopes=scopes, what=what, ok=(204, 404))
            except BerthError:
                pass
        return False

    def push_blob(self, repo, descriptor, open_fn, progress=None, chunk_size=None):
        """Upload a blob unless the registry has it; True if uploaded, False if skipped.

        ``open_fn()`` returns a fresh binary file object of the blob (called again for a
        retry or for each chunk). Without ``chunk_size`` the blob goes in one PUT; with it,
        in PATCH requests of that size, then a closing PUT.
        """
        digest = descriptor["digest"]
        size = int(descriptor["size"])
        what = f"push blob {digest} to {self._name(repo)}"
        if self.has_blob(repo, digest):
            if progress:
                progress(size, size)
            return False
        scopes = [_auth.scope(repo, ("pull", "push"))]
        r = self._request("POST", f"/v2/{repo}/blobs/uploads/", scopes=scopes, what=what,
                          kind="repository", ok=(202,), headers={"Content-Length": "0"})
        location = self._location(r, what)
        if chunk_size:
            location = self._patch_chunks(location, scopes, what, size, open_fn, progress,
                                          int(chunk_size))
            headers = {"Content-Length": "0"}
            body = None
        else:
            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
            body = lambda: _Body(open_fn(), size, progress, 0, size)
        r = self._request("PUT", _with_query(location, digest=digest), scopes=scopes,
                          what=what, kind="upload", ok=(201,), headers=headers, body=body)
        sent = r.header("Docker-Content-Digest")
        if sent and sent != digest:
            raise DigestMismatch(f"blob pushed to {self._name(repo)}", digest, sent)
        return True

    def _location(self, r, what):
        location = r.header("Location")
        if not location:
            raise SystemFailure(f"{what}: registry gave no upload location")
        return urllib.parse.urljoin(r.url, location)

    def _patch_chunks(self, location, scopes, what, size, open_fn, progress, chunk_size):
        if chunk_size <= 0:
            raise InvalidArgument(f"{what}: chunk size must be positive")
        start = 0
        while start < size:
            n = min(chunk_size, size - start)

            def body(start=start, n=n):
                f = open_fn()
                f.seek(start)
                return _Body(f, n, progress, start, size)

            r = self._request("PATCH", location, scopes=scopes, what=what, kind="upload",
                              ok=(202,), body=body, headers={
                                  "Content-Type": "application/octet-stream",
                                  "Content-Length": str(n),
                                  "Content-Range": f"{start}-{start + n - 1}"})
            end = (r.header("Range") or "").rpartition("-")[2]
            if end and end != str(start + n - 1):
                raise SystemFailure(f"{what}: registry holds bytes up to {end}, "
                                    f"sent up to {start + n - 1}")
            location = self._location(r, what)
            start += n
        return location

    def put_manifest(self, repo, ref, data, media_type):
        """PUT a manifest under a tag or its digest; -> the manifest's digest."""
        what = f"put manifest {self._name(repo, ref)}"
        if _is_digest(ref):
            alg, _ = _check_digest(ref, what)
            digest = digest_bytes(data, alg)
            if digest != ref:
                raise DigestMismatch(f"manifest {self._name(repo, ref)}", ref, digest)
        else:
            digest = digest_bytes(data)
        r = self._request("PUT", f"/v2/{repo}/manifests/{ref}",
                          scopes=[_auth.scope(repo, ("pull", "push"))], what=what,
                          kind="manifest", ok=(201, 200), body=bytes(data),
                          headers={"Content-Type": media_type})
        sent = r.header("Docker-Content-Digest")
        if sent and sent.split(":", 1)[0] == digest.split(":", 1)[0] and sent != digest:
            raise DigestMismatch(f"manifest pushed to {self._name(repo, ref)}", digest, sent)
        return digest

    def list_tags(self, repo):
        """Every tag of ``repo``, following the registry's Link pagination."""
        what = f"list tags of {self._name(repo)}"
        path = f"/v2/{repo}/tags/list"
        tags = []
        for _ in range(10000):
            r = self._request("GET", path, scopes=[_auth.scope(repo)], what=what,
                              kind="repository")
            try:
                page = json.loads(r.body).get("tags") or []
            except (ValueError, AttributeError) as err:
                raise SystemFailure(f"{what}: bad answer: {err}") from None
            tags.extend(page)
            link = r.header("Link")
            if not link or 'rel="next"' not in link:
                return tags
            path = urllib.parse.urljoin(r.url, link.split(">", 1)[0].strip().lstrip("<"))
        raise SystemFailure(f"{what}: too many pages")
