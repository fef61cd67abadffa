"""berth.metadata: the SQLite database of images, leases and other modules' tables (db.py)."""

from berth.metadata.db import Metadata

__all__ = ["Metadata"]
