"""orderbridge services: thin I/O and wiring around ``shared`` (one package each)."""
