"""berth.images: images as Docker users know them.

reference.py parses and normalises image references by Docker's rules; manifest.py knows the
OCI and Docker media types, parses manifests and indexes, and picks a platform's manifest;
service.py (pull, push, tag, remove, inspect, save, load, ...) builds on them, the content
store, the metadata database, the registry client and the snapshotters. The typed models of
the image spec's documents live in berth.spec.image.
"""
