# privops task runner. The two commands that matter:
#   make demo   - install everything, start local Kafka + registry, run the scripted story
#   make test   - install everything, lint, type-check, run unit, agent and integration tests
# Both are idempotent and work on a fresh Debian 12 machine with Python 3.11.

VENV    ?= .venv
PYTHON  ?= python3
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test install system-deps lint unit integration bench clean help

help:
	@echo "make demo   - run privops' main job (the scripted story) on a local broker"
	@echo "make test   - lint, type-check and run every test against a real local broker"
	@echo "make bench  - the performance benchmarks (DESIGN.md section 9)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Java + Maven run Kafka and the registry; Debian's prometheus brings promtool.
system-deps:
	@command -v java >/dev/null && command -v mvn >/dev/null || \
	  ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q openjdk-17-jre-headless maven)
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || \
	  ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q --no-install-recommends prometheus)

demo: install system-deps
	$(BIN)/privops demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The test session starts its own Kafka, registry and Prometheus on separate ports and
# stops them at the end (tests/conftest.py); it fails, never skips, if they cannot start.
test: install system-deps lint
	$(BIN)/pytest -q -ra

unit: install
	$(BIN)/pytest -q tests/unit tests/agents

integration: install system-deps
	$(BIN)/pytest -q tests/integration

bench: install system-deps
	$(BIN)/privops bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
