"""rps_server: the service's plumbing (settings, broker, demo) and its ``rps`` subcommands."""

__all__ = ["broker", "settings"]
