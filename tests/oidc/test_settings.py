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
