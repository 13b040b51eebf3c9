# Two entry points: `make run` serves the app, `make test` runs every test (installing first).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= $(or $(ADDNORM_HOST),127.0.0.1)
PORT ?= $(or $(ADDNORM_PORT),8000)

.PHONY: install run test test-threads lint bench zoo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"

run: install
	ADDNORM_HOST=$(HOST) ADDNORM_PORT=$(PORT) $(BIN)/uvicorn app.main:app --host $(HOST) --port $(PORT)

test: install
	$(BIN)/ruff check model app tests benchmarks
	PYTHONUNBUFFERED=1 $(BIN)/pytest  # unbuffered: the closing count line is printed even if the exit aborts

# The measuring tests again on two torch threads (`make test` uses one): a float sum in another order may move a
# figure's last digits, never a verdict or a comparison at its tolerance. CI runs both.
NUMERICAL_TESTS := tests/test_shipped_results.py tests/test_claims.py tests/test_claim_texts.py \
	tests/test_claim_seeds.py tests/test_model.py tests/test_trace.py tests/test_engine.py tests/test_train.py
test-threads: install
	ADDNORM_TEST_THREADS=2 PYTHONUNBUFFERED=1 $(BIN)/pytest $(NUMERICAL_TESTS)

bench: install
	$(BIN)/python benchmarks/bench_model.py

zoo: install
	$(BIN)/python -m model.zoo.build
