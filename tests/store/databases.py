"""An empty database of either store, for the tests that migrate it step by step."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, create_engine

from openrooms.store.postgres import sqlalchemy_url
from tests.store import postgres_schema


@contextlib.contextmanager
def empty_database(kind: str, tmp_path: Path) -> Iterator[tuple[Engine, str | None]]:
    """A SQLAlchemy engine on an empty database of `kind` ("sqlite": the file `openrooms.db` in `tmp_path`;
    "postgres": a fresh schema, dropped afterwards), and the PostgreSQL URL (None for SQLite)."""
    schema = postgres_schema.fresh_schema(postgres_schema.base_url(), upgrade=False) if kind == "postgres" else None
    with schema or contextlib.nullcontext() as url:
        engine = create_engine(f"sqlite:///{tmp_path / 'openrooms.db'}" if url is None else sqlalchemy_url(url))
        try:
            yield engine, url
        finally:
            engine.dispose()
