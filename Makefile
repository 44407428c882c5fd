# privops task runner. The two commands that matter:
#   make demo   - install everything, start local Kafka + registry, run the scripted story
#   make test   - install everything, lint, type-check, run unit, agent and integration tests
# Both are idempotent and work on a fresh Debian 12 machine with Python 3.11.

VENV    ?= .venv
PYTHON  ?= python3
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Python dependencies come only from hashed locks: dev.lock is every package `make install`
# puts in the venv, build backend included; runtime.lock is what the worker image installs
# (deploy/Dockerfile). Each pin carries the SHA-256 of every file PyPI has for that version,
# so pip refuses any other file. Both are resolved for CPython 3.11 on Linux.
# To update them: edit pyproject.toml, run `make lock` (keeps every other pin) with
# python3.11, commit both files. To upgrade: `make lock LOCK_ARGS=--upgrade`, or
# `make lock LOCK_ARGS='--upgrade-package NAME'`. pip-tools runs from a throwaway venv
# (LOCK_VENV), never from $(VENV).
DEV_LOCK     := requirements/dev.lock
RUNTIME_LOCK := requirements/runtime.lock
LOCK_VENV    ?= /tmp/privops-lock-venv
PIP_COMPILE   = CUSTOM_COMPILE_COMMAND='make lock' $(LOCK_VENV)/bin/pip-compile --quiet \
                --generate-hashes --allow-unsafe --strip-extras --no-emit-find-links $(LOCK_ARGS)

.PHONY: demo test install lock system-deps lint unit integration bench clean help

help:
	@echo "make demo   - run privops' main job (the scripted story) on a local broker"
	@echo "make test   - lint, type-check and run every test against a real local broker"
	@echo "make bench  - the performance benchmarks (DESIGN.md section 9)"

# --no-build-isolation: the editable install builds with the locked setuptools, not with
# whatever PyPI serves at that moment.
$(STAMP): pyproject.toml $(DEV_LOCK)
	@echo "installing Python dependencies into $(VENV) from $(DEV_LOCK) (first run: ~2 min)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --require-hashes -r $(DEV_LOCK)
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

lock:
	test -x $(LOCK_VENV)/bin/pip-compile || \
	  ($(PYTHON) -m venv $(LOCK_VENV) && $(LOCK_VENV)/bin/pip install -q 'pip-tools==7.6.2')
	$(PIP_COMPILE) --extra dev --build-deps-for editable -o $(DEV_LOCK) pyproject.toml
	$(PIP_COMPILE) --constraint $(DEV_LOCK) -o $(RUNTIME_LOCK) pyproject.toml

# Java + Maven run Kafka and the registry; Debian's prometheus brings promtool, its
# prometheus-alertmanager the Alertmanager the inhibit rules are tested on.
system-deps:
	@command -v java >/dev/null && command -v mvn >/dev/null || \
	  ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q openjdk-17-jre-headless maven)
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || \
	  ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q --no-install-recommends prometheus)
	@command -v prometheus-alertmanager >/dev/null || \
	  ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q --no-install-recommends prometheus-alertmanager)

demo: install system-deps
	$(BIN)/privops demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The test session starts its own Kafka, registry and Prometheus on separate ports and
# stops them at the end (tests/conftest.py); it fails, never skips, if they cannot start.
# It runs on TEST_WORKERS pytest-xdist workers, each a session of its own (ports, home,
# broker, registry); whole modules go to a worker, the longest first
# (tests/integration/conftest.py). Two workers on the 2-core machine: 8.5-11 min of
# pytest where one process took 13-22; three were no faster and pushed SLA-timed tests
# past their SLAs.
# TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
XDIST         = -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: install system-deps lint
	$(BIN)/pytest -q -ra $(XDIST)

unit: install
	$(BIN)/pytest -q tests/unit tests/agents

integration: install system-deps
	$(BIN)/pytest -q $(XDIST) tests/integration

bench: install system-deps
	$(BIN)/privops bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
