# The two commands of the README: `make serve` and `make test`. Both set up what they need on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
NODE_TESTS := tests/e2e/node
# The PostgreSQL the tests use (a fresh schema per run); CI fails when it is unreachable.
export OPENROOMS_TEST_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/test

.PHONY: serve test lint install bench lock
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

test: $(BIN)/.installed $(NODE_TESTS)/node_modules/.installed
	$(BIN)/pytest -q

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

# Benchmarks (see README, "Benchmarks"): BENCH_ARGS=--scale adds the 1M-room run (minutes).
BENCH_ARGS ?=
bench: $(BIN)/.installed
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) || \
		{ echo "wrk is required: apt-get install wrk" >&2; exit 1; }
	$(BIN)/python -m bench --postgres-url "$(OPENROOMS_TEST_POSTGRES_URL)" --migrate $(BENCH_ARGS)
