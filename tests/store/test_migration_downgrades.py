"""Every migration's downgrade undoes exactly what its upgrade did, on both stores: going up one revision at a
time records the schema at each, and going back down one at a time must find each of those schemas again (tables,
columns, indexes, constraints, and on PostgreSQL the triggers and functions). An operator who rolls a release back
with `alembic downgrade` gets the schema that release knows."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text

from openrooms.store import migrate, postgres
from openrooms.store.sqlite import SqliteStore
from tests.store.databases import empty_database


def schema(db: Connection) -> dict[str, object]:
    """What a migration may change, in a form two schemas compare by."""
    found = inspect(db)
    tables = {}
    for table in sorted(found.get_table_names()):
        if table == "alembic_version":
            continue
        if db.dialect.name == "sqlite":
            columns = [tuple(row) for row in db.execute(text(f"PRAGMA table_info('{table}')"))]
        else:  # as PostgreSQL has them (SQLAlchemy knows no xid8)
            columns = [tuple(row) for row in db.execute(text(
                "SELECT column_name, udt_name, is_nullable, column_default, ordinal_position "
                "FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = :table "
                "ORDER BY ordinal_position"), {"table": table})]
        tables[table] = (
            columns,
            sorted((i["name"] or "", tuple(i["column_names"]), bool(i["unique"])) for i in found.get_indexes(table)),
            found.get_pk_constraint(table)["constrained_columns"],
            sorted((f["referred_table"], tuple(f["constrained_columns"])) for f in found.get_foreign_keys(table)),
            sorted(tuple(u["column_names"]) for u in found.get_unique_constraints(table)),
        )
    if db.dialect.name == "sqlite":
        extras = db.execute(text("SELECT type, name, sql FROM sqlite_master WHERE type IN ('trigger', 'view') "
                                 "ORDER BY name")).all()
    else:
        extras = db.execute(text(
            "SELECT 'trigger', tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = tgrelid "
            "WHERE c.relnamespace = current_schema()::regnamespace AND NOT tgisinternal "
            "UNION ALL SELECT 'function', proname, pg_get_functiondef(p.oid) FROM pg_proc p "
            "WHERE pronamespace = current_schema()::regnamespace ORDER BY 2")).all()
    return {"tables": tables, "extras": [tuple(row) for row in extras]}


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_each_downgrade_brings_back_the_schema_of_the_revision_before(kind: str, tmp_path: Path) -> None:
    revisions = [s.revision for s in ScriptDirectory.from_config(migrate._config()).walk_revisions()][::-1]
    with empty_database(kind, tmp_path) as (engine, _url):
        seen = {}
        with engine.begin() as db:
            seen["base"] = schema(db)
            for revision in revisions:
                migrate.upgrade(db, revision)
                seen[revision] = schema(db)
        with engine.begin() as db:
            for revision, before in zip(revisions[::-1], [*revisions[::-1][1:], "base"], strict=True):
                assert migrate.current_revision(db) == revision
                command.downgrade(migrate._config(db), "-1")
                assert schema(db) == seen[before], f"the downgrade of {revision} did not give back {before}'s"
            assert migrate.current_revision(db) is None
            migrate.upgrade(db)  # and up again, to the same schema
            assert schema(db) == seen[revisions[-1]]


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_downgrade_keeps_the_rows_of_the_tables_it_rebuilds(kind: str, tmp_path: Path) -> None:
    # Going back before 0015 rebuilds the webhook subscriptions' table on SQLite (copy, drop, rename): with foreign
    # keys on, the drop would delete every delivery and queue of the subscriptions (ON DELETE CASCADE).
    with empty_database(kind, tmp_path) as (engine, url):
        path = tmp_path / "openrooms.db"
        if url is None:
            SqliteStore.upgrade(path)  # as `serve` and `db upgrade` do
        else:
            postgres.upgrade(url)
        tables = ("webhook_subscriptions", "webhook_deliveries", "webhook_queues")

        def counts() -> list[int]:
            with engine.connect() as db:
                return [db.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() for table in tables]

        with engine.begin() as db:
            db.execute(text("INSERT INTO webhook_subscriptions (id, endpoint, event_schema, secret, created_at, "
                            "updated_at, cursor_tx, cursor_seq) VALUES ('s', 'https://hooks.test/', "
                            "'EventGridSchema', 'whsec', 1, 1, 0, 0)"))
            for seq, state in ((1, "dead"), (2, "pending")):
                db.execute(text(
                    "INSERT INTO webhook_deliveries (subscription_id, room_key, event_tx, event_seq, type, "
                    "subject, time, data, state, attempts, next_attempt_at, enqueued_at) VALUES ('s', 'r', 0, "
                    ":seq, 't', 'rooms/r', 1, '{}', :state, 1, 1, 1)"), {"seq": seq, "state": state})
            db.execute(text("INSERT INTO webhook_queues (subscription_id, room_key, next_attempt_at, expires_at) "
                            "VALUES ('s', 'r', 1, 0)"))
        assert counts() == [1, 2, 1]
        if url is None:
            SqliteStore.downgrade(path, "0014")
        else:
            postgres.downgrade(url, "0014")
        assert counts() == [1, 2, 1]
