"""rps: shared plumbing (settings, broker) and the user tools (CLI, client) of the service."""

__all__ = ["broker", "settings"]
