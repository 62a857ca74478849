"""The store fixtures of tests/store: each webhook test runs on SQLite and on PostgreSQL."""

from tests.store.conftest import open_store, postgres_url, store

__all__ = ["open_store", "postgres_url", "store"]
