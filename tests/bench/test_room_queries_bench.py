"""The room queries' benchmark (bench/queries.py) runs on both stores: the preload with mixed windows, its copy
into PostgreSQL, every shape timed with its plan, and the report's targets and section. No timing is asserted:
that is the report's job."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg

from bench import queries, report
from tests.store import postgres_schema, roster_copies


def test_every_shape_is_timed_and_explained_on_both_stores_of_one_preload(tmp_path: Path) -> None:
    with postgres_schema.fresh_schema(postgres_schema.base_url()) as url:
        measured = queries.measure(tmp_path, 300, 3000, url, calls=5)
        with psycopg.connect(url) as db:  # the copy holds what the preload wrote
            copied = db.execute("SELECT count(*), sum(valid_until - valid_from) FROM rooms").fetchone()
            assert db.execute("SELECT count(*) FROM participants").fetchone() == (3000,)
        copies = roster_copies.postgres_copies(url)  # with each entry's copy of its room, in both stores
        assert len(copies) == 3000 and roster_copies.stale(copies) == {}
        assert copies == roster_copies.sqlite_copies(tmp_path / "room-queries" / "openrooms.db")
    source = sqlite3.connect(tmp_path / "room-queries" / "openrooms.db")
    assert copied == source.execute("SELECT count(*), sum(valid_until - valid_from) FROM rooms").fetchone()
    source.close()
    assert sum(measured["states"].values()) == 300 and all(measured["states"].values())  # every state is there
    assert set(measured["stores"]) == {"sqlite", "postgresql"}
    for store in measured["stores"].values():
        assert set(store["shapes"]) == set(queries.SHAPES) == set(store["plans"])
        assert store["shapes"][queries.BASELINE]["rooms_per_page"] == 101  # a full page, and one more
        assert store["shapes"][queries.BASELINE]["ratio"] == 1.0
        assert all(store["plans"].values())
    rows = {row["target"] for row in report.targets({"room_queries": measured})}
    assert "room query first page, participant vs unfiltered (postgresql, 300 rooms)" in rows
    assert len(rows) == 2 * (len(queries.SHAPES) - 1)
    markdown = "\n".join(report._room_queries(measured))
    assert "## Room queries: 300 rooms, 3,000 roster entries" in markdown and "### Query plans: sqlite" in markdown
