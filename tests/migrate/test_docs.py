"""docs/migrating-from-acs.md describes every option of `openrooms migrate`, and the README links to it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer.main

from openrooms.cli.main import app

ROOT = Path(__file__).parents[2]
DOC = ROOT / "docs" / "migrating-from-acs.md"
MIGRATE: Any = typer.main.get_command(app).commands["migrate"]  # type: ignore[attr-defined]
COMMANDS = sorted(MIGRATE.commands.items())


def test_the_commands_are_there() -> None:
    assert [name for name, _ in COMMANDS] == ["from-acs", "verify"]


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_every_option_is_documented(name: str, command: Any) -> None:
    doc = DOC.read_text()
    assert f"`openrooms migrate {name}`" in doc
    for param in command.params:
        assert getattr(param, "help", None), f"{name} {param.name} has no help text"
        for option in param.opts:
            if option.startswith("--") and option != "--help":
                assert re.search(rf"`{re.escape(option)}`", doc), f"{DOC.name} does not describe {option}"


def test_the_readme_links_the_migration_guide() -> None:
    assert "docs/migrating-from-acs.md" in (ROOT / "README.md").read_text()
