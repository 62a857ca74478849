"""The --oidc-* settings: checked by `serve`, and handed to its workers whole."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from openrooms.cli.main import app
from openrooms.config import Settings
from openrooms.http.app import oidc_verifier
from openrooms.service.clock import FixedClock


def test_the_workers_get_every_oidc_setting() -> None:
    settings = Settings(oidc_issuer="https://sts.windows.net/t/", oidc_audience="api://rooms",
                        oidc_allowed_app_ids="a,b", oidc_allowed_object_ids="o", oidc_required_role="Rooms.Admin",
                        oidc_insecure_skip_signature=True, oidc_teams_audience="api://teams")
    assert Settings.from_env(settings.to_env()) == settings
    verifier = oidc_verifier(settings, FixedClock(0))
    assert verifier is not None
    assert verifier.policy.allowed_app_ids == ("a", "b")
    assert verifier.policy.allowed_object_ids == ("o",)
    assert oidc_verifier(Settings(), FixedClock(0)) is None


@pytest.mark.parametrize(("args", "message"), [
    (["--oidc-allowed-app-id", "a"], "need --oidc-issuer"),
    (["--oidc-insecure-skip-signature"], "need --oidc-issuer"),
    (["--oidc-issuer", "sts.windows.net/t"], "must be an http(s) URL"),
])
def test_serve_refuses_inconsistent_oidc_flags(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["serve", "--in-memory", *args])
    assert result.exit_code != 0
    assert message in result.output


def test_the_workers_get_every_console_oidc_setting() -> None:
    from openrooms.http.app import console_oidc

    settings = Settings(oidc_issuer="https://login.example/t/v2.0", console_oidc_client_id="console",
                        console_oidc_client_secret="s", console_oidc_required_role="Console.Admin",
                        console_oidc_allowed_subjects="a, b", public_url="https://rooms.example.com/")
    assert Settings.from_env(settings.validated().to_env()) == settings
    sign_in = console_oidc(settings, FixedClock(0))
    assert sign_in is not None
    assert sign_in.client.allowed_subjects == ("a", "b")
    assert sign_in.client.redirect_uri == "https://rooms.example.com/console/sign-in/oidc/callback"
    assert console_oidc(Settings(oidc_issuer="https://login.example/t/v2.0"), FixedClock(0)) is None
    anyone = Settings(oidc_issuer="https://i.example/", console_oidc_client_id="c", console_oidc_allow_any_user=True)
    assert Settings.from_env(anyone.to_env()).console_oidc_allow_any_user


@pytest.mark.parametrize(("args", "message"), [
    (["--console-oidc-client-id", "c", "--console-oidc-allow-any-user"], "--console-oidc-client-id needs "
     "--oidc-issuer"),
    (["--oidc-issuer", "https://i.example/", "--console-oidc-client-id", "c"], "needs to know who may sign in"),
    (["--oidc-issuer", "https://i.example/", "--console-oidc-required-role", "r"], "need --console-oidc-client-id"),
    (["--oidc-issuer", "https://i.example/", "--console-oidc-client-id", "c", "--console-oidc-allow-any-user",
      "--console-oidc-allowed-subject", "s"], "--console-oidc-allow-any-user contradicts"),
    (["--oidc-issuer", "https://i.example/", "--console-oidc-client-id", "c", "--console-oidc-required-role", "r",
      "--console-oidc-redirect-uri", "/console/sign-in/oidc/callback"], "must be an http(s) URL"),
])
def test_serve_refuses_inconsistent_console_oidc_flags(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["serve", "--in-memory", *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
