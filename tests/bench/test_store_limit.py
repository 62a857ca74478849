"""The raw store limit of PostgreSQL: measured on tables of openrooms' shape, beside openrooms' own, which it
leaves as they were."""

from __future__ import annotations

from bench import store_limit
from tests.store import postgres_schema


def test_the_postgresql_store_limit_writes_beside_the_schema_and_leaves_nothing_behind() -> None:
    with postgres_schema.fresh_schema(postgres_schema.base_url()) as url:
        limit = store_limit.measure_postgres(url, seconds=0.3, connections=3)
        with postgres_schema.admin(url) as db:
            assert db.execute("SELECT count(*) FROM rooms").fetchone() == (0,)
            assert db.execute("SELECT count(*) FROM room_ids").fetchone() == (0,)
            left = db.execute(
                "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'openrooms_store_limit_%'").fetchone()
            assert left == (0,)
    assert limit["connections"] == 3
    for key in ("single_row_insert_per_s", "create_transaction_per_s", "single_row_insert_per_s_concurrent",
                "create_transaction_per_s_concurrent"):
        assert limit[key] > 0, key
    assert set(limit["settings"]) == {"synchronous_commit", "fsync", "wal_sync_method"}
