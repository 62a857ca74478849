"""docs/cli.md covers every command and option of `openrooms rooms/identity`, and every help page is complete."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from openrooms.cli.main import app
from tests.cli.conftest import run_openrooms

DOC = Path(__file__).parents[2] / "docs" / "cli.md"


def leaf_commands(group: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    commands = getattr(group, "commands", None)
    if commands is None:
        yield path, group
        return
    for name, command in commands.items():
        yield from leaf_commands(command, (*path, name))


ROOT = typer.main.get_command(app)
COMMANDS = [item for top in ("rooms", "identity")
            for item in leaf_commands(ROOT.commands[top], (top,))]  # type: ignore[attr-defined]


def options_of(command: Any) -> list[str]:
    return [opt for param in command.params for opt in getattr(param, "opts", ())
            if opt.startswith("--") and opt != "--help"]


def test_the_client_commands_are_all_there() -> None:
    assert {" ".join(path) for path, _ in COMMANDS} == {
        "rooms create", "rooms get", "rooms update", "rooms delete", "rooms list", "rooms export", "rooms import",
        "rooms participant add-or-update", "rooms participant get", "rooms participant remove",
        "identity user create", "identity user delete", "identity token issue", "identity token revoke",
    }


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_docs_name_every_command_and_option(path: tuple[str, ...], command: Any) -> None:
    doc = DOC.read_text()
    assert f"`openrooms {' '.join(path)}" in doc, f"docs/cli.md does not mention openrooms {' '.join(path)}"
    for option in options_of(command):
        assert re.search(rf"`{re.escape(option)}[` ]", doc), f"docs/cli.md does not describe {option}"


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_help_describes_every_option(path: tuple[str, ...], command: Any) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert command.help and command.help.split("\n")[0] in result.output
    for param in command.params:
        assert getattr(param, "help", None), f"{' '.join(path)} {param.name} has no help text"
        for option in getattr(param, "opts", ()):
            assert option in result.output


def test_root_help_lists_the_client_groups() -> None:
    result = run_openrooms("--help", env={"COLUMNS": "200"})
    assert result.returncode == 0
    assert "rooms" in result.stdout and "identity" in result.stdout
    for group in ("rooms", "rooms participant", "identity", "identity user", "identity token"):
        result = run_openrooms(*group.split(), "--help", env={"COLUMNS": "200"})
        assert result.returncode == 0, result.stderr


SHARED = ["--connection-string", "--ca-cert", "--insecure", "--debug"]
PRINTING = {"rooms create", "rooms get", "rooms update", "rooms list", "rooms import", "rooms participant get",
            "identity user create", "identity token issue"}


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_client_command_takes_the_shared_options(path: tuple[str, ...], command: Any) -> None:
    # One definition (client.client_command) adds them: the same options, last, on every command; --output
    # and --query only where the command prints something.
    shared = [*SHARED[:3], "--output", "--query", SHARED[3]] if " ".join(path) in PRINTING else SHARED
    assert options_of(command)[-len(shared):] == shared
    assert ("--output" in options_of(command)) == (" ".join(path) in PRINTING)
    assert ("--query" in options_of(command)) == (" ".join(path) in PRINTING)
