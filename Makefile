# One entry point for development. `make check` is what CI runs (through ./bootstrap test).
PY ?= .venv/bin/python
PACKAGES = director scheduling healthcheck failover lab

.PHONY: check lint typecheck test test-unit test-netns bench build man

check: lint typecheck test

build:
	$(PY) -m pip install -q -e '.[test]'

lint:
	$(PY) -m ruff format --check $(PACKAGES) tests benchmarks man setup.py
	$(PY) -m ruff check $(PACKAGES) tests benchmarks man setup.py

typecheck:
	$(PY) -m mypy $(PACKAGES) tests benchmarks man

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

# lvsd(8) and lvsadm(8) from the option definitions (tests/unit/ops/test_manpage.py
# fails while man/ is stale).
man:
	$(PY) man/generate.py
