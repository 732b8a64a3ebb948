"""The lifeline domain: wire records, sensor vocabulary, detectors and rules (no I/O)."""
