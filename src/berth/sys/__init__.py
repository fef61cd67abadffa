"""The only package that calls libc (through ctypes): mounts, namespaces, capabilities."""
