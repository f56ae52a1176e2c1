# One entry point for development. `make check` is what CI runs (through ./bootstrap test).
PY ?= .venv/bin/python
PACKAGES = director scheduling healthcheck failover lab fuzz

.PHONY: check lint typecheck test test-unit test-netns bench build fuzz

check: lint typecheck test

build:
	$(PY) -m pip install -q -e '.[test]'

lint:
	$(PY) -m ruff format --check $(PACKAGES) tests benchmarks setup.py
	$(PY) -m ruff check $(PACKAGES) tests benchmarks setup.py

typecheck:
	$(PY) -m mypy $(PACKAGES) tests

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

# Coverage-guided fuzzing (atheris), FUZZ_SECONDS per target, against a debug build of
# the C extension with AddressSanitizer and UBSan made apart in build/asan (the installed
# build is left alone). Crashing inputs land in fuzz/crashes/.
FUZZ_SECONDS ?= 60
fuzz:
	DIRECTOR_DEBUG_BUILD=1 DIRECTOR_ASAN=1 $(PY) setup.py -q build_ext \
		--build-lib build/asan --build-temp build/asan-tmp
	$(PY) -m fuzz.run --seconds $(FUZZ_SECONDS) --asan build/asan
