# Chorus: the two commands.
#   make run   install, migrate, load demo content, start web + worker + beat
#   make test  install dev requirements, ruff, then the whole suite on PostgreSQL and again on
#              SQLite (what make run ships; tests marked postgres_only are left out there)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# make test runs the suite once per database (make test TEST_DATABASES=sqlite: one only); after
# the first, only the tests that use the database (the others cannot differ); each run on
# CHORUS_TEST_WORKERS pytest-xdist workers (default 4), then the tests marked alone one at a time
# (project/scripts/test-suite.sh).
TEST_DATABASES ?= postgres sqlite

.PHONY: run test install install-dev lint check-python

check-python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "chorus needs Python 3.11 or newer")'

$(BIN)/python: | check-python
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.base-installed: requirements/base.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements/base.txt
	touch $@

$(VENV)/.dev-installed: requirements/base.txt requirements/dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements/dev.txt
	touch $@ $(VENV)/.base-installed

install: $(VENV)/.base-installed
install-dev: $(VENV)/.dev-installed

run: install
	@bash project/scripts/system-deps.sh run
	$(BIN)/python -m project.run

lint: install-dev
	$(BIN)/ruff check .

test: install-dev
	@bash project/scripts/system-deps.sh test
	@bash project/scripts/test-services.sh $(TEST_DATABASES)
	$(BIN)/ruff check .
	@PYTEST_ARGS="$(PYTEST_ARGS)" bash project/scripts/test-suite.sh $(BIN)/python $(TEST_DATABASES)
