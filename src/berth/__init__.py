"""berth: a container engine in Python, from the kernel up. See docs/ARCHITECTURE.md."""

__version__ = "0.1.0"
