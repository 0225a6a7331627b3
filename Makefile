# Two commands on a fresh clone: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test smoke lint typecheck ig bench-ingest bench-search bench-validate bench-export bench-scale fuzz soak clean reliability reliability-short

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(STAMP)

run: $(STAMP)
	$(BIN)/fhir-server serve

test: $(TEST_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# What a newcomer does: a fresh copy, a plain `pip install .`, `fhir-server serve`, the README's quick start.
smoke:
	$(PY) scripts/smoke.py

# The reliability suite (README, "Reliability suite"): faults the server must survive, then a Bundle-by-Bundle
# read-back. The short version runs in CI after `make test` and `make smoke`.
reliability: $(TEST_STAMP)
	$(BIN)/python -m reliability

reliability-short: $(TEST_STAMP)
	$(BIN)/python -m reliability --short

lint: $(TEST_STAMP)
	$(BIN)/ruff check fhir_server tests bench scripts reliability
	$(BIN)/mypy fhir_server bench scripts reliability
	$(BIN)/lint-imports --no-logo

ig: $(STAMP)
	$(BIN)/python scripts/build_ig.py

bench-ingest: $(STAMP)
	$(BIN)/python bench/ingest.py

# How cost grows with the data (bench/scale.py --help; about 1.6 million resources): needs the bench extra
# (matplotlib), which this target installs: pip install -e '.[bench]'.
bench-scale: $(TEST_STAMP)
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python bench/scale.py $(SCALE_ARGS)

# The property-based fuzz tests with the long budget (CI runs them with the bounded `ci` profile in `make test`).
fuzz: $(TEST_STAMP)
	HYPOTHESIS_PROFILE=long $(BIN)/python -m pytest -q tests/fuzz $(PYTEST_ARGS)

# Ten minutes of mixed load against a server of its own (bench/soak.py --help): memory, p95 latency, errors.
soak: $(TEST_STAMP)
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .data
