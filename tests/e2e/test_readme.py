"""The README's quickstart runs as written, with only the connection string and CA path changed."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from tests.support import Server

README = (Path(__file__).parents[2] / "README.md").read_text()
README_ENDPOINT = "https://127.0.0.1:8765/"
README_CA = "/home/you/.local/share/openrooms/certs/ca.pem"


def test_python_quickstart(https_server: Server) -> None:
    match = re.search(r"the ACS Rooms quickstart:\n\n```python\n(.*?)```", README, re.S)
    assert match, "the README has no Python quickstart block"
    code = match.group(1)
    assert README_ENDPOINT in code and README_CA in code
    code = code.replace(README_ENDPOINT, https_server.endpoint).replace(README_CA, https_server.ca)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md quickstart", "exec"), {})
    room_id, roster = printed.getvalue().split(" ", 1)
    assert room_id.isdigit() and len(room_id) == 17
    assert "'Presenter'" in roster and "'Attendee'" in roster
