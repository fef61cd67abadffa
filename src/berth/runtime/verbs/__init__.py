"""One module per berth-oci verb: each parses its flags and calls the runtime."""
