"""The one place that turns a registry's HTTP answers into berth errors.

A registry reports failures as ``{"errors": [{"code": "MANIFEST_UNKNOWN", "message": ...}]}``
(OCI distribution spec, "Error Codes"); Docker prints them as ``<code words>: <message>``,
e.g. ``manifest unknown: manifest unknown``. We keep that wording after naming the
operation, so a user reads one line such as
``pull busybox:nope: manifest unknown: manifest unknown``.
"""
import json

from berth.content.digest import DigestMismatch  # noqa: F401  (raised by the client)
from berth.errors import (
    BerthError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    SystemFailure,
)

# What Docker says when the registry's body carries no error of its own.
_DEFAULTS = {
    401: "unauthorized: authentication required",
    403: "denied: requested access to the resource is denied",
    429: "toomanyrequests: too many requests",
}
_NOT_FOUND = {
    "manifest": "manifest unknown: manifest unknown",
    "blob": "blob unknown: blob unknown to registry",
    "repository": "name unknown: repository name not known to registry",
    "upload": "blob upload unknown: blob upload unknown to registry",
}


def registry_errors(body):
    """The ``(code, message)`` pairs of a registry error body; [] when it has none."""
    if not body:
        return []
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return []
    items = doc.get("errors") if isinstance(doc, dict) else None
    out = []
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict) and isinstance(item.get("code"), str):
            out.append((item["code"], str(item.get("message") or "")))
    return out


def _words(code, message):
    words = code.lower().replace("_", " ")
    return f"{words}: {message}" if message else words


def from_status(status, body, what, *, kind=None, reason=""):
    """The BerthError for an HTTP ``status`` with a registry error ``body``.

    ``what`` names the operation ("fetch blob sha256:... from docker.io/library/busybox");
    ``kind`` ("manifest", "blob", "repository", "upload") picks the 404 words when the body
    has none (a HEAD answer never has a body).
    """
    errs = registry_errors(body)
    detail = "; ".join(_words(c, m) for c, m in errs)
    if status == 401:
        return PermissionDenied(f"{what}: {detail or _DEFAULTS[401]}")
    if status == 403:
        return PermissionDenied(f"{what}: {detail or _DEFAULTS[403]}")
    if status == 404:
        return NotFound(f"{what}: {detail or _NOT_FOUND.get(kind, 'not found')}")
    if status == 429:
        return SystemFailure(f"{what}: {detail or _DEFAULTS[429]}")
    if status == 416:
        return InvalidArgument(f"{what}: requested range not satisfiable")
    if 400 <= status < 500:
        return InvalidArgument(f"{what}: {detail or f'registry answered {status} {reason}'.strip()}")
    text = detail or f"registry answered {status} {reason}".strip()
    return SystemFailure(f"{what}: {text}")


def denied(what):
    """A token was granted but lacks the access asked for (Docker's words)."""
    return PermissionDenied(f"{what}: {_DEFAULTS[403]}")


def from_connection_error(err, what, host):
    """A network failure (after retries) as one line naming the host."""
    if isinstance(err, BerthError):
        return err
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return SystemFailure(f"{what}: {host}: {text}", errno=getattr(err, "errno", None))
