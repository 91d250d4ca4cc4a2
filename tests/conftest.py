"""Shared by every test folder: pytest puts this folder on sys.path, so the test suites
import ``backing_services`` (PostgreSQL / Redis plumbing) by name."""
