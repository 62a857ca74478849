from __future__ import annotations

import pytest

from openrooms.http import versions
from openrooms.service.errors import ServiceError
from openrooms.service.model import Role


def test_version_differences() -> None:
    v = {x.name: x for x in versions.ROOMS.versions}
    assert not v["2023-06-14"].pstn_dial_out and v["2024-04-15"].pstn_dial_out
    assert Role.COLLABORATOR not in v["2024-04-15"].roles
    assert Role.COLLABORATOR in v["2025-02-28-preview"].roles and Role.COLLABORATOR in v["2025-03-13"].roles


@pytest.mark.parametrize("spelling", ["2025-03-13", "ApiVersion.V2025_03_13", "2025-02-28-Preview"])
def test_spellings(spelling: str) -> None:
    assert versions.ROOMS.resolve(spelling).name.lower() == spelling.lower().replace("apiversion.v", "").replace(
        "_", "-"
    )


@pytest.mark.parametrize(("requested", "code"), [(None, "MissingApiVersionParameter"), ("",
                         "MissingApiVersionParameter"), ("2022-02-01-preview", "UnsupportedApiVersion")])
def test_unsupported(requested: str | None, code: str) -> None:
    with pytest.raises(ServiceError) as caught:
        versions.ROOMS.resolve(requested)
    assert caught.value.code == code
    assert "2023-06-14, 2023-10-30-preview, 2024-04-15, 2025-02-28-preview, 2025-03-13" in caught.value.message


def test_family_for_path() -> None:
    assert versions.family_for_path("/rooms") is versions.ROOMS
    assert versions.family_for_path("/rooms/1/participants") is versions.ROOMS
    assert versions.family_for_path("/identities/x/:issueAccessToken") is versions.IDENTITY
    assert versions.family_for_path("/roomsx") is None
    assert versions.family_for_path("/healthz") is None


def test_the_room_queries_claim_the_list_at_their_own_version_alone() -> None:
    extension = versions.ROOM_QUERIES.versions[0].name
    assert versions.family_for_path("/rooms", "GET", extension) is versions.ROOM_QUERIES
    assert versions.family_for_path("/rooms", "GET", extension.upper()) is versions.ROOM_QUERIES
    assert versions.family_for_path("/rooms", "GET", "2025-03-13") is versions.ROOMS
    assert versions.family_for_path("/rooms", "GET", None) is versions.ROOMS
    assert versions.family_for_path("/rooms", "POST", extension) is versions.ROOMS
    assert versions.family_for_path("/rooms/12345678901234567", "GET", extension) is versions.ROOMS
