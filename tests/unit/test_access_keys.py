"""Which access keys are in force: the well-known development keys only while no key was ever chosen."""

from __future__ import annotations

import itertools

import pytest

from openrooms.service import keys
from openrooms.service.keys import DEV_ACCESS_KEY, DEV_SECONDARY_KEY, KeyInForce
from openrooms.store.sqlite import SqliteStore

OWN_PRIMARY = "b3duLXByaW1hcnkta2V5LW9mLXRoZS1vcGVyYXRvcg=="
OWN_SECONDARY = "b3duLXNlY29uZGFyeS1rZXktb2YtdGhlLW9wZXJhdG9y"
DEV = {"primary": DEV_ACCESS_KEY, "secondary": DEV_SECONDARY_KEY}
OWN = {"primary": OWN_PRIMARY, "secondary": OWN_SECONDARY}

# Each key: not given, given as one's own key, or given as (either) well-known key.
GIVEN_CHOICES = [None, "own", "dev"]
ROTATED_PRIMARY = "cm90YXRlZC1wcmltYXJ5LWtleS0wMTIzNDU2Nzg5"
ROTATED_SECONDARY = "cm90YXRlZC1zZWNvbmRhcnkta2V5LTAxMjM0NTY3"
STORED = {
    "nothing stored": {},
    "the development keys": dict(DEV),
    "own keys (rotated)": {"primary": ROTATED_PRIMARY, "secondary": ROTATED_SECONDARY},
    "an own primary and the development secondary": {"primary": ROTATED_PRIMARY, "secondary": DEV_SECONDARY_KEY},
    "the development primary and an own secondary": {"primary": DEV_ACCESS_KEY, "secondary": ROTATED_SECONDARY},
}


def fresh() -> str:
    fresh.count += 1  # type: ignore[attr-defined]
    return f"bmV3LXJhbmRvbS1rZXktbnVtYmVyLTAwMDAw{fresh.count:04d}"  # type: ignore[attr-defined]


fresh.count = 0  # type: ignore[attr-defined]


def given_keys(primary: str | None, secondary: str | None) -> dict[str, str]:
    choice = {"own": OWN, "dev": DEV}
    return {name: choice[kind][name] for name, kind in (("primary", primary), ("secondary", secondary)) if kind}


@pytest.mark.parametrize(("primary", "secondary"), list(itertools.product(GIVEN_CHOICES, GIVEN_CHOICES)))
@pytest.mark.parametrize("stored_case", list(STORED))
def test_the_rule_for_every_combination(primary: str | None, secondary: str | None, stored_case: str) -> None:
    given, stored = given_keys(primary, secondary), STORED[stored_case]
    resolved = keys.resolve(given, stored, generate=fresh)
    assert set(resolved) == {"primary", "secondary"}
    if not given and all(stored.get(name, DEV[name]) == DEV[name] for name in DEV):
        # Nothing was ever chosen: the development pair, as on a first start.
        assert resolved == {name: KeyInForce(DEV[name], "development") for name in DEV}
        return
    for name, key in resolved.items():
        if name in given:
            assert key == KeyInForce(given[name], "given")
        elif name in stored and not keys.is_well_known(stored[name]):
            assert key == KeyInForce(stored[name], "stored")
        else:
            assert key.origin == "new" and not keys.is_well_known(key.key)
        # A well-known key is in force only where it was given explicitly.
        assert not keys.is_well_known(key.key) or key.origin == "given"


def test_giving_the_primary_alone_retires_the_development_secondary() -> None:
    resolved = keys.resolve({"primary": OWN_PRIMARY}, {}, generate=lambda: "new-random")
    assert resolved == {"primary": KeyInForce(OWN_PRIMARY, "given"), "secondary": KeyInForce("new-random", "new")}
    assert keys.well_known_in_force(resolved) == []


def test_giving_the_development_secondary_explicitly_keeps_it() -> None:
    resolved = keys.resolve({"primary": OWN_PRIMARY, "secondary": DEV_SECONDARY_KEY}, {})
    assert resolved["secondary"] == KeyInForce(DEV_SECONDARY_KEY, "given")
    assert keys.well_known_in_force(resolved) == ["secondary"]


@pytest.mark.parametrize(("key", "problem"), [("not base64!", "is not valid base64"),
                                               ("c2hvcnQ=", "must decode to at least 16 bytes")])
def test_the_one_decoder_refuses_what_is_no_key(key: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        keys.decode(key)
    assert keys.decode(OWN_PRIMARY) == b"own-primary-key-of-the-operator"


async def test_seeding_stores_a_new_secondary_and_keeps_a_stored_one(store: SqliteStore) -> None:
    first = await keys.seed(store, keys.resolve({"primary": OWN_PRIMARY}, {}), 1)
    assert first["secondary"].origin == "new"
    assert await store.get_access_keys() == {"primary": OWN_PRIMARY, "secondary": first["secondary"].key}
    # A restart without flags keeps both; one with another primary keeps the stored secondary.
    again = keys.resolve({}, await store.get_access_keys())
    assert again == {"primary": KeyInForce(OWN_PRIMARY, "stored"), "secondary": KeyInForce(first["secondary"].key,
                                                                                          "stored")}
    other = await keys.seed(store, keys.resolve({"primary": OWN_SECONDARY}, await store.get_access_keys()), 2)
    assert other["secondary"] == KeyInForce(first["secondary"].key, "stored")


async def test_instances_starting_together_agree_on_the_new_key(store: SqliteStore) -> None:
    one = keys.resolve({"primary": OWN_PRIMARY}, {}, generate=lambda: OWN_SECONDARY)
    two = keys.resolve({"primary": OWN_PRIMARY}, {}, generate=lambda: DEV_ACCESS_KEY[::-1])
    await keys.seed(store, one, 1)
    assert (await keys.seed(store, two, 1))["secondary"] == KeyInForce(OWN_SECONDARY, "stored")


async def test_seeding_replaces_a_stored_development_key(store: SqliteStore) -> None:
    await keys.seed(store, keys.resolve({}, {}), 1)
    assert await store.get_access_keys() == DEV
    resolved = await keys.seed(store, keys.resolve({"secondary": OWN_SECONDARY}, await store.get_access_keys()), 2)
    assert resolved["primary"].origin == "new"
    assert await store.get_access_keys() == {"primary": resolved["primary"].key, "secondary": OWN_SECONDARY}


async def test_rotating_one_key_replaces_a_well_known_other(store: SqliteStore) -> None:
    await store.set_access_keys(DEV, 1)
    new = await keys.rotate(store, "primary", 2)
    assert set(new) == {"primary", "secondary"}
    assert await store.get_access_keys() == new
    assert not any(keys.is_well_known(key) for key in new.values())
    # With keys of one's own, the other key keeps working.
    newer = await keys.rotate(store, "secondary", 3)
    assert set(newer) == {"secondary"}
    assert (await store.get_access_keys())["primary"] == new["primary"]


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("", False), ("192.168.1.10", False), ("rooms.internal", False),
])
def test_what_counts_as_loopback(host: str, loopback: bool) -> None:
    from openrooms.cli.main import _is_loopback

    assert _is_loopback(host) is loopback


@pytest.mark.parametrize("allow", [False, True])
@pytest.mark.parametrize("given", [{}, {"primary": OWN_PRIMARY}, {"primary": OWN_PRIMARY,
                                                                   "secondary": DEV_SECONDARY_KEY}])
def test_development_keys_beyond_loopback_need_saying_so(allow: bool, given: dict[str, str]) -> None:
    import typer

    from openrooms.cli.main import _refuse_development_keys_beyond_loopback
    from openrooms.config import Settings

    in_force = keys.resolve(given, {})
    public = keys.well_known_in_force(in_force)
    for host in ("127.0.0.1", "0.0.0.0"):
        settings = Settings(host=host, allow_development_keys=allow)
        if public and host == "0.0.0.0" and not allow:
            with pytest.raises(typer.Exit) as refused:
                _refuse_development_keys_beyond_loopback(settings, in_force)
            assert refused.value.exit_code == 2
        else:
            _refuse_development_keys_beyond_loopback(settings, in_force)
