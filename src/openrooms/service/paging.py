"""Keyset pagination, declared once: opaque cursors and page-size bounds shared by every listing."""

from __future__ import annotations

import base64
import binascii

from openrooms.service import errors

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def page_size(requested: int | None, default: int) -> int:
    if requested is None:
        return default
    if not 1 <= requested <= MAX_PAGE_SIZE:
        raise errors.bad_request(f"maxpagesize must be between 1 and {MAX_PAGE_SIZE}.", "maxpagesize")
    return requested


def encode_cursor(*parts: str | int) -> str:
    text = "\x1f".join(str(p) for p in parts)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[str]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise errors.invalid_page_token() from None
    parts = text.split("\x1f")
    if len(parts) != arity:
        raise errors.invalid_page_token()
    return parts
