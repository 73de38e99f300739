# The two commands: `make run` and `make test` (CONTRACT section 1). Both bootstrap .venv/ from nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config/default.yaml

.PHONY: run test lint typecheck scenarios clean chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamps re-install only when pyproject.toml changes, so a second `make` is fast.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-run

# make run PORT=8081 (and HOST=0.0.0.0) serve elsewhere than config's server.host/server.port.
run: $(VENV)/.installed-run
	$(BIN)/cds-service serve --config $(CONFIG)$(if $(PORT), --port $(PORT))$(if $(HOST), --host $(HOST))

lint: $(VENV)/.installed-test
	$(BIN)/ruff check cds_service tests
	$(BIN)/mypy --strict cds_service/rules cds_service/facts.py cds_service/fhir/shapes.py cds_service/behind.py cds_service/service.py cds_service/drugs.py cds_service/units.py cds_service/catalog.py cds_service/partb

test: lint chromium
	$(BIN)/python -m pytest -q

# The console's browser tests drive Debian's chromium at /usr/bin/chromium (never a downloaded browser).
chromium:
	@test -x /usr/bin/chromium || (apt-get update && apt-get install -y chromium)

scenarios: $(VENV)/.installed-test
	$(BIN)/python ../shared/tools/check_scenarios.py . ../shared/scenarios

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
