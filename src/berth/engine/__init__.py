"""berth.engine: containers as Docker's engine keeps them.

Owns the containers' records (store.py), ids and names (names.py), the OCI config built from an
image and `run` flags, and the per-container monitor. It drives containers only through an OCI
runtime's command line (berth-oci or runc), never by importing berth.runtime.
"""
