"""The test suites, a package so that shared helpers import as ``tests.helpers``."""
