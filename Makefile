# orderbridge task runner; CI (.ci/run) calls `make test`.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

# The one command that runs the pipeline on a machine without Docker.
run:
	$(PIP) install --quiet -e .
	$(PYTHON) -m services.cli run --demo

.PHONY: run install lint format typecheck generate check-generated test unit integration bench services

install:
	$(PIP) install --quiet -e '.[dev]'

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

format:
	$(PYTHON) -m ruff format .
	$(PYTHON) -m ruff check --fix .

typecheck:
	$(PYTHON) -m mypy

generate:
	$(PYTHON) -m shared.schema.export
	$(PYTHON) -m shared.schema.asyncapi
	$(PYTHON) -m shared.broker.definitions
	$(PYTHON) -m shared.dashboard

check-generated:
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

unit:
	$(PYTHON) -m pytest tests/unit

integration:
	$(PYTHON) -m pytest tests/integration

BENCHES ?= normalize publish simulator ingress state consumer poller e2e
bench:
	for name in $(BENCHES); do $(PYTHON) -m bench.$$name || exit 1; done
