"""openrooms.testing as a user gets it: docs/testing.md's examples, run as a user runs them (the pytest example by
pytest in a directory of its own, the plugin found through its entry point; the unittest example by
`python -m unittest`; the JavaScript example, the Node test suite's emulator.test.mjs, by
`python -m openrooms.testing node --test`), and a plugin that costs nothing until a test asks for its fixtures."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "testing.md"
NODE_PROJECT = Path(__file__).parent / "node"
TIMEOUT_SECONDS = 300


def example(name: str) -> str:
    """The code block after `<!-- example: name ... -->` in docs/testing.md."""
    match = re.search(rf"<!-- example: {name}\b[^>]*-->\n```\w+\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert match, f"docs/testing.md has no `{name}` example"
    return match[1]


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    finished = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
    assert finished.returncode == 0, f"{command} exited {finished.returncode}:\n{finished.stdout}\n{finished.stderr}"
    return finished


def test_the_pytest_example_passes(tmp_path: Path) -> None:
    (tmp_path / "test_example.py").write_text(example("pytest"))
    finished = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_example.py"], tmp_path)
    assert "3 passed" in finished.stdout, finished.stdout


def test_the_unittest_example_passes(tmp_path: Path) -> None:
    (tmp_path / "test_example.py").write_text(example("unittest"))
    finished = run([sys.executable, "-m", "unittest", "-v", "test_example"], tmp_path)
    assert "Ran 1 test" in finished.stderr and "OK" in finished.stderr, finished.stderr


def test_the_javascript_example_is_the_node_suites_and_passes() -> None:
    script = NODE_PROJECT / "emulator.test.mjs"
    assert example("node") == script.read_text()
    if shutil.which("node") is None or not (NODE_PROJECT / "node_modules").exists():
        pytest.fail("the JavaScript example needs Node.js 20+ and `npm ci` in tests/e2e/node (make test does it)")
    finished = run([sys.executable, "-m", "openrooms.testing", "node", "--test", script.name], NODE_PROJECT)
    assert "# pass 1" in finished.stdout, finished.stdout


def test_importing_the_package_imports_neither_pytest_nor_the_server() -> None:
    probe = ("import sys, openrooms.testing; "
             "print(sorted(m for m in ('pytest', 'uvicorn', 'openrooms.http.app', 'openrooms.store.sqlite') "
             "if m in sys.modules))")
    finished = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert finished.stdout.strip() == "[]"


def test_the_plugin_starts_nothing_for_tests_that_do_not_ask(tmp_path: Path) -> None:
    (tmp_path / "test_plain.py").write_text(
        "import sys, threading\n"
        "def test_plain():\n"
        "    assert not [t for t in threading.enumerate() if t.name.startswith('openrooms-emulator')]\n"
        "    assert 'uvicorn' not in sys.modules and 'openrooms.http.app' not in sys.modules\n"
    )
    finished = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_plain.py"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stdout + finished.stderr
