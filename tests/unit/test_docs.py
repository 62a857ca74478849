"""Every flag and setting a user can set is documented."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import typer.main

from openrooms.cli.main import app
from openrooms.config import ENV_PREFIX, Settings

README = (Path(__file__).parents[2] / "README.md").read_text()
# Settings that `serve` resolves itself rather than taking from the user.
_DERIVED = {"tls"}


def _serve_options() -> list[str]:
    serve = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    return [name for param in serve.params for name in param.opts if name.startswith("--")]


def test_every_serve_option_is_in_the_readme() -> None:
    options = _serve_options()
    assert "--port" in options
    missing = [name for name in options if f"`{name}`" not in README]
    assert missing == []


def test_every_setting_has_a_documented_environment_variable() -> None:
    missing = [
        f"{ENV_PREFIX}{f.name.upper()}"
        for f in fields(Settings)
        if f.name not in _DERIVED and f"{ENV_PREFIX}{f.name.upper()}" not in README
    ]
    assert missing == []
