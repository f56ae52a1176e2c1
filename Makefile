# One entry point for development. `make check` is what CI runs (through ./bootstrap test).
PY ?= .venv/bin/python
PACKAGES = director scheduling healthcheck failover lab

.PHONY: check lint typecheck test test-unit test-netns bench build

check: lint typecheck test

build:
	$(PY) -m pip install -q -e '.[test]'

lint:
	$(PY) -m ruff format --check $(PACKAGES) tests benchmarks setup.py
	$(PY) -m ruff check $(PACKAGES) tests benchmarks setup.py

typecheck:
	$(PY) -m mypy $(PACKAGES) tests benchmarks

# Every test, both fast paths; netns tests need root. Under CI=true a skipped
# netns test fails the run (tests/conftest.py).
test:
	$(PY) -m pytest -q -p no:cacheprovider

test-unit:
	$(PY) -m pytest -q -m "not netns"

test-netns:
	$(PY) -m pytest -q -m netns

bench:
	$(PY) -m benchmarks.run
