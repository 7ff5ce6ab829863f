# zonecat — every set-up step lives here, so `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: run test check bench bench-quick crash soak fuzz hostile clean help postgres-binaries

help:
	@echo "make run    - start zonecat on http://127.0.0.1:8080 (SQLite in ./.zonecat, shipped catalog)"
	@echo "make test   - lint, type checks and the whole test suite"
	@echo "make check  - lint and type checks only"
	@echo "make bench  - benchmarks B1-B8 with targets (writes bench/results/latest.json; ~10 min)"
	@echo "make bench-quick - the same, smaller (a few minutes)"
	@echo "make crash  - the long crash campaign: 200 SIGKILLs during installs and deletes (SEED=n to replay)"
	@echo "make fuzz   - the long API fuzzing campaign: 2,000 schemathesis cases (EXAMPLES=n, SEED=n to replay)"
	@echo "make hostile - hostile inputs (oversize, deep, non-UTF-8, exploding CEL, 10,000 entities) + healthz latency"
	@echo "make soak   - mixed load for MINUTES (default 10): requests, errors, server RSS at start/half/end"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/zonecat serve

check: $(STAMP)
	$(BIN)/ruff check zonecat tests bench
	$(BIN)/ruff format --check zonecat tests bench
	$(BIN)/mypy --strict zonecat

test: check postgres-binaries
	$(BIN)/python -m pytest -n 2 --durations=15

# The store, API and SDK suites also run against a throwaway PostgreSQL server that the tests start themselves
# (tests/pg.py) from the server binaries. As root on a machine without them, install them (idempotent); otherwise
# the tests say what is missing.
postgres-binaries:
	@if [ "$$(id -u)" = 0 ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v apt-get >/dev/null; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql-15; \
	fi

bench: $(STAMP) postgres-binaries
	$(BIN)/python -m bench

bench-quick: $(STAMP) postgres-binaries
	$(BIN)/python -m bench --quick

crash: $(STAMP)
	$(BIN)/python -m tests.campaigns.crash --kills $${KILLS:-200} $${SEED:+--seed $$SEED}

fuzz: $(STAMP)
	$(BIN)/python -m tests.campaigns.fuzz --max-examples $${EXAMPLES:-2000} $${SEED:+--seed $$SEED}

hostile: $(STAMP)
	$(BIN)/python -m tests.campaigns.hostile

soak: $(STAMP)
	$(BIN)/python -m tests.campaigns.soak --minutes $${MINUTES:-10}

clean:
	rm -rf $(VENV) .zonecat .pytest_cache .mypy_cache .ruff_cache
