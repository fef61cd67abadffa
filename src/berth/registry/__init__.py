"""berth.registry: a client for OCI distribution registries, with auth and credentials.

client.py (Client: ping, manifests, blobs, tags), auth.py (challenges, tokens),
credentials.py (Docker's config.json format; login/logout), errors.py (HTTP -> berth errors).
Imports only berth.errors and berth.content.digest (for DigestMismatch).
"""
