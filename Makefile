# orderbridge task runner; CI (.ci/run) calls `make test`.
#
# Everything runs in a virtual environment of the project's own (.venv):
# distribution Pythons refuse system-wide installs (PEP 668), and the
# project's pinned versions stay apart from the machine's packages.
SYSTEM_PYTHON ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
PIP := $(PYTHON) -m pip --disable-pip-version-check
# Pinned versions (constraints.txt) when the checkout has them: two installs get the same.
CONSTRAINTS := $(if $(wildcard constraints.txt),-c constraints.txt)

# The one command that runs the pipeline on a machine without Docker.
run: $(VENV)/.installed-run
	$(PYTHON) -m services.cli run --demo

.PHONY: run install lint format typecheck generate check-generated test unit integration bench services

$(VENV)/bin/python:
	@$(SYSTEM_PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "orderbridge needs Python 3.11 or newer; '$(SYSTEM_PYTHON)' is $$($(SYSTEM_PYTHON) -V 2>&1). Run make with SYSTEM_PYTHON=python3.12 (or another)" >&2; exit 1; }
	@$(SYSTEM_PYTHON) -m venv $(VENV) >/dev/null 2>&1 || { rm -rf $(VENV); \
	  echo "cannot create the virtual environment $(VENV): install Python's venv module (Debian/Ubuntu: apt-get install python3-venv)" >&2; exit 1; }
	@echo "created the virtual environment $(VENV) (commands: $(VENV)/bin/orderbridge)" >&2

# Stamps: reinstall only when pyproject.toml or the pins change.
$(VENV)/.installed-run: pyproject.toml $(wildcard constraints.txt) | $(VENV)/bin/python
	$(PIP) install --quiet -e . $(CONSTRAINTS)
	@touch $@

$(VENV)/.installed-dev: pyproject.toml $(wildcard constraints.txt) | $(VENV)/bin/python
	$(PIP) install --quiet -e '.[dev]' $(CONSTRAINTS)
	@touch $@ $(VENV)/.installed-run

install: $(VENV)/.installed-dev

lint: install
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

format: install
	$(PYTHON) -m ruff format .
	$(PYTHON) -m ruff check --fix .

typecheck: install
	$(PYTHON) -m mypy

generate: install
	$(PYTHON) -m shared.schema.export
	$(PYTHON) -m shared.schema.asyncapi
	$(PYTHON) -m shared.broker.definitions
	$(PYTHON) -m shared.dashboard

check-generated: install
	$(PYTHON) -m shared.schema.export --check
	$(PYTHON) -m shared.schema.asyncapi --check
	$(PYTHON) -m shared.broker.definitions --check
	$(PYTHON) -m shared.dashboard --check

# Brokers and databases the tests talk to (real ones, never mocks).
services:
	bash .ci/services.sh

# The one command that runs the tests on a fresh machine.
test: install services lint typecheck check-generated
	@$(PYTHON) -m pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo "no tests were collected: failing" >&2; exit 1; fi; \
	exit $$status

unit: install
	$(PYTHON) -m pytest tests/unit

integration: install
	$(PYTHON) -m pytest tests/integration

BENCHES ?= normalize publish simulator ingress state consumer poller e2e
bench: install
	for name in $(BENCHES); do $(PYTHON) -m bench.$$name || exit 1; done
