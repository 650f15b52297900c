# make demo / make test work on a fresh Debian machine: `setup` installs the
# PostgreSQL 15 packages and a venv first, and is a no-op when they are there.
VENV ?= $(CURDIR)/.venv
BIN := $(VENV)/bin
DEMO_DIR := $(CURDIR)/.sandbox/demo

.PHONY: setup demo test lint fmt clean

setup:
	@./scripts/setup.sh

demo: setup
	@$(BIN)/admmgt demo --yes --dir $(DEMO_DIR)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check installer plpython tests bench
	$(BIN)/ruff format --check installer plpython tests bench
	$(BIN)/mypy installer/admmgt plpython/admmgt_plpy tests
	$(BIN)/sqlfluff lint sql

fmt: setup
	$(BIN)/ruff format installer plpython tests bench
	$(BIN)/ruff check --fix installer plpython tests bench

clean:
	-$(BIN)/admmgt sandbox --dir $(DEMO_DIR) destroy
	-$(BIN)/admmgt sandbox --dir $(CURDIR)/.sandbox/test destroy
	rm -rf $(VENV)
