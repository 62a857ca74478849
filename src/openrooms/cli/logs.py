"""Logging set-up shared by the CLI and server workers."""

from __future__ import annotations

import logging
import sys


def configure_logging(*, silent: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("openrooms")
    root.handlers[:] = [handler]
    root.propagate = False
    root.setLevel(logging.INFO)
    # --silent turns off the access log only; warnings and errors are still reported.
    logging.getLogger("openrooms.access").setLevel(logging.WARNING if silent else logging.INFO)
