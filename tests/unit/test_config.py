"""Settings check themselves, wherever they come from: `serve`'s flags, or a worker's environment."""

from __future__ import annotations

import base64
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import typer.main

from openrooms.cli.main import app
from openrooms.config import BOUNDS, InvalidSettings, Settings, flag, variable
from openrooms.http.app import app_from_env
from openrooms.store.postgres import PostgresStore

SHORT_KEY = base64.b64encode(b"too short").decode()
SECRET = "s" * 32


@pytest.mark.parametrize(("changes", "message"), [
    ({"access_key": "not base64!"}, "--access-key is not valid base64."),
    ({"secondary_key": SHORT_KEY}, "--secondary-key must decode to at least 16 bytes."),
    ({"cert": Path("cert.pem")}, "--cert and --key go together."),
    ({"in_memory": True, "database_url": "postgresql://db/x"}, "--in-memory and --database-url contradict each other."),
    ({"database_url": "mysql://db/x"}, "--database-url must be a PostgreSQL URL: postgresql://user:password@host"),
    ({"in_memory": True, "workers": 2}, "--in-memory keeps data in one process"),
    ({"server": "gunicorn"}, "--server is granian or uvicorn."),
    ({"log_format": "xml"}, "--log-format is text or json."),
    ({"resource_id": "contoso"}, "--resource-id: resource id 'contoso' is not a GUID"),
    ({"livekit_url": "wss://lk"}, "--livekit-url, --livekit-api-key and --livekit-api-secret go together."),
    ({"livekit_url": "wss://lk", "livekit_api_key": "k", "livekit_api_secret": "short"},
     "--livekit-api-secret must be at least 32 characters"),
    ({"page_size": 1001}, "--page-size is 1001; it must be between 1 and 1000."),
    ({"workers": 0}, "--workers is 0; it must be at least 1."),
    ({"database_call_timeout": 0.0}, "--database-call-timeout is 0.0; it must be at least 0.001."),
])
def test_a_bad_setting_is_named_by_its_flag(changes: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidSettings) as raised:
        Settings().replace(**changes).validated()
    assert str(raised.value).startswith(message)


def test_the_same_error_names_the_variables_for_settings_read_from_the_environment() -> None:
    with pytest.raises(InvalidSettings) as raised:
        Settings(in_memory=True, database_url="postgresql://db/x").validated()
    assert raised.value.naming(variable) == (
        "OPENROOMS_IN_MEMORY and OPENROOMS_DATABASE_URL contradict each other."
    )


def test_values_in_a_message_are_shown_as_they_are() -> None:
    with pytest.raises(InvalidSettings) as raised:
        Settings(resource_id="{port}").validated()
    assert str(raised.value).startswith("--resource-id: resource id '{port}' is not a GUID")


def test_valid_settings_are_returned_normalised() -> None:
    resource_id = "3F2504E0-4F89-11D3-9A0C-0305E82C3301"
    checked = Settings(resource_id=resource_id, livekit_url="wss://lk", livekit_api_key="k",
                       livekit_api_secret=SECRET).validated()
    assert checked.resource_id == resource_id.lower()
    assert Settings().validated() == Settings()


def test_the_worker_factory_refuses_bad_settings_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROOMS_IN_MEMORY", "true")
    monkeypatch.setenv("OPENROOMS_WORKERS", "3")
    with pytest.raises(InvalidSettings) as raised:
        app_from_env()
    assert str(raised.value).startswith("OPENROOMS_IN_MEMORY keeps data in one process; it cannot be shared by "
                                        "several OPENROOMS_WORKERS.")


def test_database_timeouts_are_read_from_the_environment() -> None:
    settings = Settings.from_env({"OPENROOMS_DATABASE_CALL_TIMEOUT": "2.5", "OPENROOMS_DATABASE_CONNECT_TIMEOUT": "7"})
    assert (settings.database_call_timeout, settings.database_connect_timeout) == (2.5, 7)
    with pytest.raises(ValueError, match="OPENROOMS_DATABASE_POOL_WAIT='soon' is not a number"):
        Settings.from_env({"OPENROOMS_DATABASE_POOL_WAIT": "soon"})


def pool_settings(store: PostgresStore) -> tuple[object, ...]:
    pool = store._pool  # the settings' only observable effect short of timing a failure
    assert isinstance(pool.kwargs, dict)
    return pool.max_size, pool.timeout, pool.reconnect_timeout, pool.kwargs["connect_timeout"], store._call_timeout


def test_the_postgres_client_takes_its_timeouts_from_the_settings() -> None:
    # Built without connecting (connections are made on first use): the pool as psycopg_pool holds it.
    store = PostgresStore("postgresql://postgres@127.0.0.1:1/none", pool_size=3, connect_timeout=7, pool_wait=0.5,
                          call_timeout=2.5, reconnect_timeout=1.5)
    assert pool_settings(store) == (3, 0.5, 1.5, 7, 2.5)
    settings = Settings()
    assert pool_settings(PostgresStore("postgresql://postgres@127.0.0.1:1/none")) == (
        settings.pool_size, settings.database_pool_wait, settings.database_reconnect_timeout,
        settings.database_connect_timeout, settings.database_call_timeout)


def _serve_options() -> dict[str, Any]:
    serve = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    return {param.name: param for param in serve.params if param.param_type_name == "option"}


def test_serve_options_take_defaults_ranges_and_variables_from_the_settings() -> None:
    options = _serve_options()
    defaults = Settings()
    named = {f.name for f in fields(Settings)} & set(options)
    assert {"port", "page_size", "database_call_timeout", "rate_limit"} <= named
    for name in named:
        option = options[name]
        assert option.envvar == variable(name), name
        assert flag(name) in option.opts or flag(name).split("/")[0] in option.opts, name
        value = getattr(defaults, name)
        if (isinstance(value, int | float) and not isinstance(value, bool)) or name in ("host", "server", "log_format"):
            assert f"(default: {value})" in (option.help or ""), name
        if name in BOUNDS:
            least, most = BOUNDS[name]
            assert (option.min, option.max) == (least, most), name


README = (Path(__file__).parents[2] / "README.md").read_text()


def test_the_readme_shows_the_settings_defaults() -> None:
    # The serve table's third column, for every setting whose default is a number or a word.
    defaults = Settings()
    shown = {}
    for line in README.splitlines():
        cells = [cell.strip() for cell in line.split("|")[1:-1]]
        if len(cells) == 4 and cells[1].startswith(f"`{variable('')}"):
            shown[cells[1].strip("`")] = cells[2]
    assert variable("port") in shown
    for f in fields(Settings):
        value = getattr(defaults, f.name)
        if isinstance(value, bool) or not isinstance(value, int | float | str) or f.name.endswith("key"):
            continue
        text = f"{value:g}" if isinstance(value, float) else str(value)
        assert shown[variable(f.name)].startswith(f"`{text}`"), f.name


def test_serve_refuses_bad_settings_with_exit_code_2_before_starting_anything(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["serve", "--location", str(tmp_path), "--in-memory", "--workers", "2"])
    assert result.exit_code == 2
    assert "error: --in-memory keeps data in one process; it cannot be shared by several --workers." in result.output
    assert list(tmp_path.iterdir()) == []  # no database, no certificates
