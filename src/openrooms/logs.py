"""Logging set-up of server workers (and of anything else that logs as openrooms does)."""

from __future__ import annotations

import json
import logging
import sys
import time


class JsonLines(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the access log's fields (`extra=fields`)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in getattr(record, "fields", {}).items() if v not in (None, "")})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


JsonLines.converter = time.gmtime


def configure_logging(*, silent: bool, json_lines: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonLines() if json_lines else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    root = logging.getLogger("openrooms")
    root.handlers[:] = [handler]
    root.propagate = False
    root.setLevel(logging.INFO)
    # --silent turns off the access log only; warnings and errors are still reported.
    logging.getLogger("openrooms.access").setLevel(logging.WARNING if silent else logging.INFO)
