"""`openrooms db upgrade` and `openrooms db downgrade` on both stores, in process: going back to an earlier
revision lists what it undoes and asks first (or takes `--yes`), is all or nothing, and a database a newer
release upgraded is refused with what to do, not a traceback."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from typer.testing import CliRunner

from openrooms.cli.main import app
from openrooms.store import migrate, postgres
from openrooms.store.sqlite import SqliteStore
from tests.store import postgres_schema

HEAD = migrate.head_revision()
ORDER = [s.revision for s in ScriptDirectory.from_config(migrate._config()).walk_revisions()][::-1]
TWO_BACK = ORDER[-3]


@contextlib.contextmanager
def database(kind: str, tmp_path: Path) -> Iterator[list[str]]:
    """The options that name a database of `kind`, upgraded to the head."""
    if kind == "sqlite":
        where = ["--location", str(tmp_path)]
        assert CliRunner().invoke(app, ["db", "upgrade", *where]).exit_code == 0
        yield where
        return
    with postgres_schema.fresh_schema(postgres_schema.base_url()) as url:
        yield ["--database-url", url]


def revision(where: list[str]) -> str | None:
    if where[0] == "--location":
        return SqliteStore.revision(Path(where[1]) / "openrooms.db")
    return postgres.revision(where[1])


def set_revision(where: list[str], value: str) -> None:
    if where[0] == "--location":
        with contextlib.closing(sqlite3.connect(Path(where[1]) / "openrooms.db")) as lite, lite:
            lite.execute("UPDATE alembic_version SET version_num = ?", (value,))
    else:
        with postgres_schema.admin(where[1]) as db:
            db.execute("UPDATE alembic_version SET version_num = %s", (value,))


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_downgrade_lists_what_it_undoes_asks_first_and_goes_back(kind: str, tmp_path: Path) -> None:
    with database(kind, tmp_path) as where:
        asked = CliRunner().invoke(app, ["db", "downgrade", TWO_BACK, *where], input="n\n")
        assert asked.exit_code != 0
        assert f"  {ORDER[-1]}  " in asked.output and f"  {ORDER[-2]}  " in asked.output
        assert f"  {TWO_BACK}  " not in asked.output and "is lost" in asked.output
        assert revision(where) == HEAD  # not confirmed: nothing done
        done = CliRunner().invoke(app, ["db", "downgrade", TWO_BACK, *where, "--yes"])
        assert done.exit_code == 0, done.output
        assert revision(where) == TWO_BACK
        again = CliRunner().invoke(app, ["db", "upgrade", *where])
        assert again.exit_code == 0, again.output
        assert revision(where) == HEAD


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_downgrade_refuses_what_it_cannot_do_and_changes_nothing(kind: str, tmp_path: Path) -> None:
    with database(kind, tmp_path) as where:
        for target, said in ((HEAD, "nothing to undo"), ("0099", "no schema revision of this openrooms"),
                             ("0001; DROP", "no schema revision")):
            refused = CliRunner().invoke(app, ["db", "downgrade", target, *where, "--yes"])
            assert refused.exit_code == 2 and said in refused.output, refused.output
            assert "Traceback" not in refused.output
        assert revision(where) == HEAD


def test_a_downgrade_off_a_terminal_needs_yes(tmp_path: Path) -> None:
    with database("sqlite", tmp_path) as where:
        refused = CliRunner().invoke(app, ["db", "downgrade", TWO_BACK, *where])  # stdin is no terminal here
        assert refused.exit_code == 2 and "--yes" in refused.output
        assert revision(where) == HEAD
        missing = CliRunner().invoke(app, ["db", "downgrade", TWO_BACK, "--location", str(tmp_path / "none")])
        assert missing.exit_code == 2 and "there is no database" in missing.output


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_database_of_a_newer_release_is_refused_with_what_to_do(kind: str, tmp_path: Path) -> None:
    with database(kind, tmp_path) as where:
        set_revision(where, "0099")
        for command in (["db", "upgrade"], ["db", "downgrade", TWO_BACK, "--yes"]):
            refused = CliRunner().invoke(app, [*command, *where])
            assert refused.exit_code == 2, refused.output
            assert "upgraded by a newer openrooms" in refused.output
            assert f"openrooms db downgrade {HEAD}" in refused.output and "Traceback" not in refused.output
        assert revision(where) == "0099"


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_downgrade_that_fails_midway_leaves_the_database_as_it_was(kind: str, tmp_path: Path) -> None:
    with database(kind, tmp_path) as where:
        # Undoing 0014 makes this index again: one of that name already there fails it, after the migrations
        # after 0014 were undone.
        trap = "CREATE INDEX {} ON rooms (id)".format(
            "participants_by_raw_id" if kind == "sqlite" else "participants_by_raw_id_room")
        if kind == "sqlite":
            with contextlib.closing(sqlite3.connect(Path(where[1]) / "openrooms.db")) as lite, lite:
                lite.execute(trap)
        else:
            with postgres_schema.admin(where[1]) as db:
                db.execute(trap)
        failed = CliRunner().invoke(app, ["db", "downgrade", "0013", *where, "--yes"])
        assert failed.exit_code == 2 and "it is unchanged" in failed.output, failed.output
        assert "participants_by_raw_id" in failed.output and "Traceback" not in failed.output
        assert revision(where) == HEAD
        upgraded = CliRunner().invoke(app, ["db", "upgrade", *where])  # nothing half undone to trip over
        assert upgraded.exit_code == 0, upgraded.output
