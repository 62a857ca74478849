"""A fresh PostgreSQL schema per test session, for the store and end-to-end tests.

`OPENROOMS_TEST_POSTGRES_URL` names the database (e.g. postgresql://postgres@127.0.0.1:5432/test). Unset, the
PostgreSQL tests skip and say why; set, an unreachable database fails them: CI must not pass by skipping.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
import pytest

from openrooms.store import postgres

URL_VARIABLE = "OPENROOMS_TEST_POSTGRES_URL"


def base_url() -> str:
    """The test database's URL, or skip the test when none is configured."""
    url = os.environ.get(URL_VARIABLE, "")
    if not url:
        pytest.skip(f"{URL_VARIABLE} is not set: no PostgreSQL to test against")
    return url


def with_options(url: str, *options: str) -> str:
    """`url` with libpq `-c` options added (e.g. "search_path=x", "lock_timeout=500")."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query["options"] = " ".join([query.get("options", ""), *(f"-c{o}" for o in options)]).strip()
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))  # libpq reads no '+' as space


def with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(params)
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))  # libpq reads no '+' as space


def admin(url: str) -> psycopg.Connection[tuple[object, ...]]:
    """A plain autocommit connection (fails, rather than skips, when the database is unreachable)."""
    return psycopg.connect(url, autocommit=True, connect_timeout=5)


@contextlib.contextmanager
def fresh_schema(url: str, *, upgrade: bool = True) -> Iterator[str]:
    """Create a uniquely named schema, yield a URL whose search_path is it (migrated with `upgrade`), and
    drop it afterwards."""
    name = f"openrooms_test_{uuid.uuid4().hex[:12]}"
    with admin(url) as connection:
        connection.execute(f'CREATE SCHEMA "{name}"')
    schema_url = with_options(url, f"search_path={name}")
    try:
        if upgrade:
            postgres.upgrade(schema_url)
        yield schema_url
    finally:
        with admin(url) as connection:
            connection.execute(f'DROP SCHEMA "{name}" CASCADE')


def truncate_all(schema_url: str) -> None:
    """Empty every table of the schema but the migration bookkeeping."""
    with admin(schema_url) as connection:
        tables = [
            row[0]
            for row in connection.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename <> 'alembic_version'"
            )
        ]
        if tables:
            connection.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE")
