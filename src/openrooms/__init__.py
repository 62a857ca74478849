"""openrooms: a self-hosted, wire-compatible Azure Communication Services Rooms and Identity API."""

__version__ = "0.1.0"
