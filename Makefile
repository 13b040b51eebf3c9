# Two entry points: `make run` serves the app, `make test` runs every test (installing first).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= $(or $(ADDNORM_HOST),127.0.0.1)
PORT ?= $(or $(ADDNORM_PORT),8000)

.PHONY: install run test lint bench zoo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"

run: install
	ADDNORM_HOST=$(HOST) ADDNORM_PORT=$(PORT) $(BIN)/uvicorn app.main:app --host $(HOST) --port $(PORT)

test: install
	$(BIN)/ruff check model app tests benchmarks
	$(BIN)/pytest

bench: install
	$(BIN)/python benchmarks/bench_model.py

zoo: install
	$(BIN)/python -m model.zoo.build
