# Two commands a new machine needs: `make dev` runs entityflow on the embedded defaults,
# `make test` runs the full suite. Both create .venv and install the project when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev test lint typecheck unit bench clean postgres browser

$(STAMP): pyproject.toml
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

dev: $(STAMP)
	$(BIN)/entityflow dev

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# PostgreSQL on 127.0.0.1:5432 (database test, user postgres, trust): installed and started
# by the project itself when missing.
postgres:
	deploy/local/postgres.sh

# Headless Chromium and chromedriver for the console's browser test (Debian's packages):
# installed by the project itself when missing.
browser:
	deploy/local/browser.sh

test: lint typecheck postgres browser
	$(BIN)/pytest --durations=30

unit: $(STAMP)
	$(BIN)/pytest -m "not kafka and not slow"

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
