"""Registry authentication: WWW-Authenticate challenges, bearer tokens, basic auth.

A registry answers 401 with a challenge (RFC 7235). ``Basic realm=...`` wants the user's
password on every request; ``Bearer realm=...,service=...,scope=...`` sends us to a token
server (Docker's token spec: ``GET realm?service=S&scope=repository:NAME:pull,push`` with
the user's basic credentials, if any; the answer is ``{"token"|"access_token", "expires_in",
"issued_at"}``). Tokens are cached per (realm, service, scope, user) until shortly before
they expire; the cache is shared by a client's threads behind a lock.

The HTTP call to the token server is made by the caller's ``get(url, headers) -> (status,
body)``, so this module knows nothing about connections and tests can fake the server.
"""
import base64
import json
import threading
import time
import urllib.parse

from berth.errors import InvalidArgument, PermissionDenied, SystemFailure

# Docker's token spec: a token without expires_in lasts 60 seconds.
DEFAULT_EXPIRES_IN = 60
_SEPARATORS = " \t,="


class Challenge:
    """One auth challenge: ``scheme`` lowercased ("bearer", "basic"), ``params`` by name."""

    __slots__ = ("params", "scheme")

    def __init__(self, scheme, params=None):
        self.scheme = scheme.lower()
        self.params = dict(params or {})

    def __eq__(self, other):
        return (isinstance(other, Challenge) and self.scheme == other.scheme
                and self.params == other.params)

    def __repr__(self):
        return f"Challenge({self.scheme!r}, {self.params!r})"


def _skip(s, i, chars):
    while i < len(s) and s[i] in chars:
        i += 1
    return i


def _token(s, i):
    j = i
    while j < len(s) and s[j] not in _SEPARATORS and s[j] != '"':
        j += 1
    return s[i:j], j


def _quoted(s, i):
    """The value of the quoted-string starting at s[i] == '"', and the index after it."""
    out = []
    i += 1
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            out.append(s[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(out), i + 1
        out.append(c)
        i += 1
    raise InvalidArgument(f"WWW-Authenticate: unterminated quoted string in {s!r}")


def parse_challenges(header):
    """The challenges in one WWW-Authenticate value (or a list of values), in order.

    ``Bearer realm="https://auth.example/token",service="reg",scope="repository:a:pull"``
    -> [Challenge("bearer", {"realm": ..., "service": "reg", "scope": "repository:a:pull"})].
    Several challenges may share a value (``Basic realm="x", Bearer realm="y"``).
    """
    if header is None:
        return []
    if isinstance(header, (list, tuple)):
        return [c for h in header for c in parse_challenges(h)]
    s = header
    out = []
    i = 0
    for _ in range(len(s) + 1):  # every pass consumes at least one character
        i = _skip(s, i, " \t,")
        if i >= len(s):
            break
        word, j = _token(s, i)
        if not word:  # a stray '=' or '"': skip it
            i = j + 1
            continue
        k = _skip(s, j, " \t")
        if k < len(s) and s[k] == "=" and out:
            k = _skip(s, k + 1, " \t")
            if k < len(s) and s[k] == '"':
                value, i = _quoted(s, k)
            else:
                value, i = _token(s, k)
            out[-1].params[word.lower()] = value
        elif k < len(s) and s[k] == "=":
            i = k + 1  # a parameter before any scheme: not a challenge
        else:
            out.append(Challenge(word))
            i = j
    return out


def pick(challenges):
    """The challenge to answer: Bearer if offered (it carries scopes), else Basic."""
    for scheme in ("bearer", "basic"):
        for c in challenges:
            if c.scheme == scheme:
                return c
    return None


def scope(repo, actions=("pull",)):
    """``repository:<repo>:pull[,push]`` with the actions in a stable order."""
    if isinstance(actions, str):
        actions = actions.split(",")
    order = {"pull": 0, "push": 1, "delete": 2}
    acts = sorted({a for a in actions if a}, key=lambda a: (order.get(a, 9), a))
    if not repo or not acts:
        raise InvalidArgument(f"registry scope: repository and actions are required ({repo!r})")
    return f"repository:{repo}:{','.join(acts)}"


def basic_header(user, password):
    raw = f"{user}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


class TokenCache:
    """Bearer tokens by (realm, service, scope, user), dropped shortly before they expire."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = {}

    def get(self, key):
        with self._lock:
            hit = self._tokens.get(key)
            if hit is None:
                return None
            token, expires = hit
            if self._clock() >= expires:
                del self._tokens[key]
                return None
            return token

    def put(self, key, token, expires_in):
        # Renew a little early so a token does not expire between our check and its use.
        margin = min(10.0, expires_in / 10.0)
        with self._lock:
            self._tokens[key] = (token, self._clock() + expires_in - margin)

    def drop(self, key):
        with self._lock:
            self._tokens.pop(key, None)


def token_url(challenge, scopes):
    params = challenge.params
    realm = params.get("realm")
    if not realm:
        raise InvalidArgument("registry auth: bearer challenge has no realm")
    query = []
    if params.get("service"):
        query.append(("service", params["service"]))
    query.extend(("scope", s) for s in scopes)
    if not query:
        return realm
    sep = "&" if "?" in realm else "?"
    return realm + sep + urllib.parse.urlencode(query)


def fetch_token(get, challenge, scopes, creds=None):
    """Ask the challenge's token server for a token; -> (token, expires_in).

    ``get(url, headers) -> (status, body)``; ``creds`` is (user, password) or None.
    """
    url = token_url(challenge, scopes)
    headers = {"Accept": "application/json"}
    if creds:
        headers["Authorization"] = basic_header(*creds)
    status, body = get(url, headers)
    if status == 401:
        if creds:
            raise PermissionDenied("unauthorized: incorrect username or password")
        raise PermissionDenied("unauthorized: authentication required")
    if status == 403:
        raise PermissionDenied("denied: requested access to the resource is denied")
    if status != 200:
        raise SystemFailure(f"fetch token from {challenge.params.get('realm')}: "
                            f"token server answered {status}")
    try:
        doc = json.loads(body)
        token = doc.get("token") or doc.get("access_token")
        expires_in = doc.get("expires_in") or DEFAULT_EXPIRES_IN
        expires_in = max(float(expires_in), 1.0)
    except (ValueError, TypeError, AttributeError) as err:
        raise SystemFailure(f"fetch token from {challenge.params.get('realm')}: "
                            f"bad answer: {err}") from None
    if not token or not isinstance(token, str):
        raise SystemFailure(f"fetch token from {challenge.params.get('realm')}: no token in answer")
    return token, expires_in


class Authenticator:
    """A client's auth state: the scheme the registry asked for, and its tokens.

    ``creds`` is (user, password) or None. ``header(scopes, get)`` gives the Authorization
    value to send for a request needing ``scopes`` (None until the registry has challenged
    us once); ``challenged(challenges, scopes)`` records a 401's challenges and says whether
    retrying can help.
    """

    def __init__(self, creds=None, cache=None):
        self.creds = tuple(creds) if creds else None
        self.cache = cache if cache is not None else TokenCache()
        self._lock = threading.Lock()
        self._challenge = None

    @property
    def challenge(self):
        with self._lock:
            return self._challenge

    def challenged(self, challenges):
        """Remember the registry's challenge; False when we have no way to answer it."""
        chosen = pick(challenges)
        if chosen is None:
            return False
        with self._lock:
            self._challenge = chosen
        if chosen.scheme == "basic":
            return self.creds is not None
        return True

    def _key(self, challenge, scopes):
        user = self.creds[0] if self.creds else ""
        return (challenge.params.get("realm", ""), challenge.params.get("service", ""),
                " ".join(scopes), user)

    def forget(self, scopes):
        challenge = self.challenge
        if challenge is not None and challenge.scheme == "bearer":
            self.cache.drop(self._key(challenge, scopes))

    def header(self, scopes, get):
        challenge = self.challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            return basic_header(*self.creds) if self.creds else None
        key = self._key(challenge, scopes)
        token = self.cache.get(key)
        if token is None:
            token, expires_in = fetch_token(get, challenge, scopes, self.creds)
            self.cache.put(key, token, expires_in)
        return "Bearer " + token
