"""``orderbridge check``: is this deployment ready to run? (settings, routes, broker, state)."""
