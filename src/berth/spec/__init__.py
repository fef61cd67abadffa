"""Typed, frozen models of the OCI runtime and image specs, and their validation."""
