"""The validity window of a room: defaults and rules, in one place."""

from __future__ import annotations

from dataclasses import dataclass

from openrooms.service import errors
from openrooms.service.clock import TICKS_PER_DAY

MAX_WINDOW_DAYS = 180
MAX_WINDOW = MAX_WINDOW_DAYS * TICKS_PER_DAY


@dataclass(frozen=True, slots=True)
class Window:
    valid_from: int
    valid_until: int


def window_for_create(valid_from: int | None, valid_until: int | None, now: int) -> Window:
    """Defaults: from now, until exactly 180 days after the start. Then the rules of `check_window`."""
    start = now if valid_from is None else valid_from
    end = start + MAX_WINDOW if valid_until is None else valid_until
    check_window(start, end, now)
    return Window(start, end)


def window_for_update(valid_from: int | None, valid_until: int | None, now: int) -> Window | None:
    """An update moves the window only with both bounds; None means the window is left as it is."""
    if valid_from is None and valid_until is None:
        return None
    if valid_from is None or valid_until is None:
        raise errors.bad_arguments(errors.window_bounds_not_together())
    check_window(valid_from, valid_until, now)
    return Window(valid_from, valid_until)


def check_window(valid_from: int, valid_until: int, now: int) -> None:
    # An end in the past is reported alone: the real service stops there.
    if valid_until < now:
        raise errors.bad_arguments(errors.valid_until_in_past())
    details = []
    if valid_from - now > MAX_WINDOW:
        details.append(errors.valid_from_too_far())
    if valid_until < valid_from or valid_until - valid_from > MAX_WINDOW:
        details.append(errors.time_range_incorrect())
    if details:
        raise errors.bad_arguments(*details)
