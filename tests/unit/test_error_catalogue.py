"""Every error is built in one catalogue (`service/errors.py`), one named constructor per error, and written to
the wire in one place (`http/errors.py`)."""

from __future__ import annotations

import ast
from pathlib import Path

import msgspec
import pytest

import openrooms
from openrooms.http import errors as wire
from openrooms.http import versions
from openrooms.service import errors

PACKAGE = Path(openrooms.__file__).parent
CATALOGUE = PACKAGE / "service" / "errors.py"


def _calls_of(name: str) -> list[str]:
    """`file:line` of every call of `name` (as a bare name or an attribute) in the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                called = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
                if called == name:
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    return found


def test_errors_are_built_only_in_the_catalogue() -> None:
    outside = [where for where in _calls_of("ServiceError") if not where.startswith("service/errors.py:")]
    assert outside == []


def test_each_error_code_and_message_has_one_constructor() -> None:
    # A literal (status, code, message) built twice is two constructors of one error: e.g. the unknown path's
    # NotFound and the missing room's were once two.
    seen: dict[tuple[object, ...], int] = {}
    for node in ast.walk(ast.parse(CATALOGUE.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ServiceError":
            literal = tuple(ast.dump(arg) for arg in node.args[:3])
            assert literal not in seen, f"line {node.lineno} builds the error of line {seen[literal]} again"
            seen[literal] = node.lineno


def test_an_unknown_path_and_a_missing_room_are_the_same_not_found() -> None:
    assert wire.envelope(errors.not_found()) == msgspec.json.encode(
        {"error": {"code": "NotFound", "message": "The server cannot find the requested resource."}}
    )


@pytest.mark.parametrize("requested", [None, "", "2019-01-01"])
def test_api_version_errors_come_from_the_catalogue(requested: str | None) -> None:
    family = versions.ROOMS
    with pytest.raises(errors.ServiceError) as raised:
        family.resolve(requested)
    expected = (
        errors.unsupported_api_version(requested, family.title, family.supported)
        if requested
        else errors.missing_api_version(family.title, family.supported)
    )
    assert raised.value == expected
    assert raised.value.target == "api-version"
