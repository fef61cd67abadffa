"""berth.content: blobs addressed by digest.

digest.py   parsing and computing "sha256:..."/"sha512:..." digests; DigestMismatch
store.py    ContentStore (blobs/ and resumable ingests under <root>/content) and Writer
gc.py       what images and leases reference, collect() and check()

Imports only berth.errors; metadata is handed in (gc takes a Metadata object), never imported.
"""

from berth.content.digest import DigestMismatch
from berth.content.store import ContentStore, Writer

__all__ = ["ContentStore", "DigestMismatch", "Writer"]
