"""Schema migrations (Alembic), shared by every SQL store. `serve` upgrades an embedded database itself;
a server store is upgraded explicitly and refused when its schema is not the one this version knows."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

MIGRATIONS = Path(__file__).with_name("migrations")


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def is_known_revision(revision: str) -> bool:
    """Whether this version's migrations include `revision` (a newer openrooms may have gone further)."""
    try:
        return ScriptDirectory.from_config(_config()).get_revision(revision) is not None
    except Exception:  # alembic raises its own errors for unknown revisions
        return False


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def newer_than_known(current: str) -> str:
    """What to tell of a database at `current`, a revision this version does not know."""
    head = head_revision()
    return (f"the database has schema revision {current}, which this openrooms (head {head}) does not know: it was "
            f"upgraded by a newer openrooms. Run that version, or go back to this one with that version's "
            f"`openrooms db downgrade {head}`")


def steps_down(current: str | None, target: str) -> list[tuple[str, str]]:
    """The migrations that going back from `current` to `target` undoes, newest first: (revision, the first line
    of its description). Raises ValueError when `target` is unknown or not older than `current`."""
    scripts = list(ScriptDirectory.from_config(_config()).walk_revisions())  # newest first (one line of them)
    order = [script.revision for script in scripts]
    if target not in order:
        raise ValueError(f"{target!r} is no schema revision of this openrooms (it knows {', '.join(order[::-1])})")
    if current is None:
        raise ValueError("the database has no openrooms schema")
    if current not in order:
        raise ValueError(newer_than_known(current))
    if order.index(current) >= order.index(target):
        raise ValueError(f"the database is at revision {current}, not newer than {target}: nothing to undo")
    steps = []
    for script in scripts[order.index(current):order.index(target)]:
        lines = (script.doc or "").strip().splitlines()
        steps.append((script.revision, lines[0] + (" ..." if len(lines) > 1 and lines[1].strip() else "")
                      if lines else ""))
    return steps


def downgrade(connection: Connection, revision: str) -> None:
    """Bring the schema back to `revision`, undoing every migration after it (and what they stored)."""
    command.downgrade(_config(connection), revision)


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Bring the schema to `revision` (tests stop at an older one, to check a migration's data)."""
    command.upgrade(_config(connection), revision)
