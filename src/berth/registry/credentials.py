"""Registry credentials in Docker's config.json format.

``{"auths": {"<host>": {"auth": base64("user:password")}}}``. berth writes its own file
(``$XDG_CONFIG_HOME/berth/auth.json``, else ``~/.config/berth/auth.json``; mode 0600) and
also reads Docker's (``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``) so a
``docker login`` works for berth too; berth never writes Docker's file. Keys may be bare
hosts ("reg:5000") or URLs ("https://index.docker.io/v1/"); both name the same registry.
Credential helpers (credsStore, credHelpers) are not consulted.
"""
import base64
import binascii
import json
import os
import tempfile

from berth.errors import InvalidArgument, NotFound, from_oserror

# Docker Hub is known by several names; Docker stores it under the v1 index URL.
_DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io",
               "https://index.docker.io/v1/")


def default_path():
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "berth", "auth.json")


def docker_path():
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(base, "config.json")


def normalize(key):
    """The bare host a config key names: "https://reg:5000/v1/" -> "reg:5000"."""
    host = key.strip()
    if "://" in host:
        host = host.split("://", 1)[1]
    host = host.split("/", 1)[0].lower()
    return "docker.io" if host in _DOCKER_HUB else host


def encode(user, password):
    return base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def decode(entry, where):
    """(user, password) from one ``auths`` entry; None for an entry with no credentials."""
    if not isinstance(entry, dict):
        raise InvalidArgument(f"{where}: entry is not an object")
    if entry.get("auth"):
        try:
            raw = base64.b64decode(entry["auth"], validate=True).decode()
        except (binascii.Error, ValueError) as err:
            raise InvalidArgument(f"{where}: auth is not base64 of user:password ({err})") from None
        user, sep, password = raw.partition(":")
        if not sep:
            raise InvalidArgument(f"{where}: auth is not base64 of user:password")
        return user, password
    if entry.get("username"):
        return entry["username"], entry.get("password", "")
    return None


def _load(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise from_oserror(err, f"read {path}") from None
    if not data.strip():
        return {}
    try:
        doc = json.loads(data)
    except ValueError as err:
        raise InvalidArgument(f"{path}: not valid JSON: {err}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{path}: not a JSON object")
    return doc


def _find(doc, host, path):
    auths = doc.get("auths")
    if not isinstance(auths, dict):
        return None
    for key, entry in auths.items():
        if normalize(key) == host:
            found = decode(entry, f"{path}: auths[{key!r}]")
            if found:
                return found
    return None


class Store:
    """Credentials by registry host: ``path`` is written, ``docker_config`` only read.

    ``Store()`` uses the default files; tests pass their own paths (``docker_config=""``
    reads no Docker file).
    """

    def __init__(self, path=None, docker_config=None):
        self.path = path or default_path()
        self.docker_config = docker_path() if docker_config is None else docker_config

    def lookup(self, domain):
        """(user, password) for ``domain``, from berth's file first, then Docker's; or None."""
        host = normalize(domain)
        for path in (self.path, self.docker_config):
            if path:
                found = _find(_load(path), host, path)
                if found:
                    return found
        return None

    def save(self, domain, user, password):
        host = normalize(domain)
        doc = _load(self.path)
        auths = doc.get("auths") if isinstance(doc.get("auths"), dict) else {}
        for key in [k for k in auths if normalize(k) == host]:
            del auths[key]
        auths[host] = {"auth": encode(user, password)}
        doc["auths"] = auths
        self._write(doc)

    def remove(self, domain):
        """Forget ``domain``'s credentials; NotFound when berth has none stored."""
        host = normalize(domain)
        doc = _load(self.path)
        auths = doc.get("auths") if isinstance(doc.get("auths"), dict) else {}
        keys = [k for k in auths if normalize(k) == host]
        if not keys:
            if self.docker_config and _find(_load(self.docker_config), host, self.docker_config):
                raise NotFound(f"not logged in to {domain} with berth: the credentials come "
                               f"from {self.docker_config}; use docker logout instead")
            raise NotFound(f"not logged in to {domain}")
        for key in keys:
            del auths[key]
        doc["auths"] = auths
        self._write(doc)

    def _write(self, doc):
        directory = os.path.dirname(self.path) or "."
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".auth-", dir=directory)
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(doc, f, indent="\t")
                    f.write("\n")
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(tmp, 0o600)
                os.replace(tmp, self.path)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
        except OSError as err:
            raise from_oserror(err, f"write {self.path}") from None


def lookup(domain, *, store=None):
    """(user, password) stored for ``domain`` (berth's file, then Docker's), or None."""
    return (store if store is not None else Store()).lookup(domain)


def login(domain, user, password, *, store=None, insecure=None, timeout=30):
    """Check ``user``/``password`` against ``domain`` (a ping with auth), then store them."""
    from berth.registry.client import Client

    if not user:
        raise InvalidArgument("login: username is required")
    store = store if store is not None else Store()
    Client(domain, insecure=insecure, credentials=(user, password), timeout=timeout).ping()
    store.save(domain, user, password)


def logout(domain, *, store=None):
    """Remove the stored credentials for ``domain``; NotFound if there were none."""
    store = store if store is not None else Store()
    store.remove(domain)
