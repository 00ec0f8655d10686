"""Pure normalizers: upstream document → ``CanonicalEvent`` (no I/O, no clock)."""
