# The two commands of the README: `make serve` and `make test`. Both set up what they need on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
NODE_TESTS := tests/e2e/node
# The PostgreSQL the tests use (a fresh schema per run); CI fails when it is unreachable.
export OPENROOMS_TEST_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/test

.PHONY: serve serve-calls test lint install bench lock call-tools
.DEFAULT_GOAL := serve

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

$(NODE_TESTS)/node_modules/.installed: $(NODE_TESTS)/package-lock.json
	cd $(NODE_TESTS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(BIN)/.installed

# constraints.txt from the newest versions pyproject.toml allows, resolved in a throwaway environment.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -e '.[test]'
	{ sed -n '/^#/p' constraints.txt; .lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^openrooms'; } \
		> constraints.txt.new && mv constraints.txt.new constraints.txt
	rm -rf .lock-venv

serve: $(BIN)/.installed
	$(BIN)/openrooms serve

# openrooms with a local Janus for room calls (docs/calls.md): Janus on ws://127.0.0.1:8188/, stopped with openrooms.
JANUS_DIR ?= $(VENV)/janus
JANUS_SECRET ?= openrooms-local-janus
serve-calls: $(BIN)/.installed call-tools
	$(BIN)/python -c "from pathlib import Path; from openrooms.calls import local; \
		local.write_config(Path('$(JANUS_DIR)').resolve(), ws_port=8188, api_secret='$(JANUS_SECRET)')"
	janus -F $(abspath $(JANUS_DIR)) > $(JANUS_DIR)/janus.log 2>&1 & JANUS_PID=$$!; \
		trap 'kill $$JANUS_PID; wait $$JANUS_PID' EXIT INT TERM; \
		$(BIN)/openrooms serve --janus-url ws://127.0.0.1:8188/ --janus-api-secret $(JANUS_SECRET)

# The room call tests run a real Janus and Debian's Chromium (driven by Playwright, no browser download).
call-tools:
	@{ command -v janus >/dev/null && command -v chromium >/dev/null; } || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq janus chromium; } || \
		{ echo "janus and chromium are required for the call tests: apt-get install janus chromium" >&2; exit 1; }

# In parallel (pytest-xdist): most of the suite's time is waiting on the real processes it starts, so more workers
# than cores pay; the call tests share one worker (one network namespace, one Janus), as tests/conftest.py says.
TEST_WORKERS ?= 4
test: $(BIN)/.installed $(NODE_TESTS)/node_modules/.installed call-tools
	$(BIN)/pytest -q -n $(TEST_WORKERS)

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

# Benchmarks (see README, "Benchmarks"): BENCH_ARGS=--scale adds the 1M-room run (minutes).
BENCH_ARGS ?=
bench: $(BIN)/.installed
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) || \
		{ echo "wrk is required: apt-get install wrk" >&2; exit 1; }
	@{ [ "$$(id -u)" = 0 ] && command -v ip >/dev/null && command -v janus >/dev/null && command -v chromium >/dev/null; } || \
		echo "*** make bench: the room call benchmark needs root, iproute2, janus and chromium (make call-tools);" \
			"it will be reported as NOT RUN ***" >&2
	$(BIN)/python -m bench --postgres-url "$(OPENROOMS_TEST_POSTGRES_URL)" --migrate --calls $(BENCH_ARGS)
