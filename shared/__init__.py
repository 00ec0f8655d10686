"""orderbridge's shared library: schema, normalizers, broker, state, clients, settings."""
