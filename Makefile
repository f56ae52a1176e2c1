# One entry point for development. `make check` is what CI runs (through ./bootstrap test).
PY ?= .venv/bin/python
PACKAGES = director scheduling healthcheck failover lab fuzz

.PHONY: check lint typecheck test test-unit test-debug test-netns bench build coverage man fuzz

check: lint typecheck test test-debug

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

# The unit suite once more on the C extensions' debug build (DIRECTOR_DEBUG_BUILD=1:
# -O0 -g3 and the table's invariant asserts). It is built in a copy of the tree in a
# temporary directory, so the normal build here is left as it is; the copy comes first
# on sys.path there, and tests/unit/dataplane/test_debug_build.py checks it is in use.
DEBUG_COPY_EXCLUDES = --exclude=./.venv --exclude=./.git --exclude=./build \
	--exclude='*.egg-info' --exclude='*.so' --exclude=__pycache__ --exclude=.coverage*
test-debug:
	@d=$$(mktemp -d /tmp/lvsd-debug.XXXXXX) && trap 'rm -rf "$$d"' EXIT && \
	tar -cf - $(DEBUG_COPY_EXCLUDES) . | tar -xf - -C "$$d" && cd "$$d" && \
	echo "test-debug: building the debug extensions in $$d" && \
	DIRECTOR_DEBUG_BUILD=1 $(abspath $(PY)) setup.py -q build_ext --inplace >build.log 2>&1 \
		|| { cat build.log; exit 1; } && \
	DIRECTOR_EXPECT_DEBUG_BUILD=1 $(abspath $(PY)) -m pytest -q -p no:cacheprovider \
		-m "not netns" tests/unit

bench:
	$(PY) -m benchmarks.run

# lvsd(8) and lvsadm(8) from the option definitions (tests/unit/ops/test_manpage.py
# fails while man/ is stale).
man:
	$(PY) man/generate.py

# Line coverage of the whole suite, netns tests and every Python process they start
# included (pyproject.toml's [tool.coverage.*]); needs root like `make test`. Not part of
# `make check`: tracing makes the run slower. The .pth exists only during the run.
COVERAGE_PTH = $(shell $(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/lvsd-coverage.pth
coverage:
	rm -f .coverage .coverage.*
	@trap 'rm -f $(COVERAGE_PTH)' EXIT && \
	echo 'import coverage; coverage.process_startup()' > $(COVERAGE_PTH) && \
	COVERAGE_PROCESS_START=$(CURDIR)/pyproject.toml COVERAGE_FILE=$(CURDIR)/.coverage \
		$(PY) -m pytest -q -p no:cacheprovider $(COVERAGE_TESTS); status=$$?; \
	rm -f $(COVERAGE_PTH); \
	$(PY) -m coverage combine -q && $(PY) -m coverage report && exit $$status
# Coverage-guided fuzzing (atheris), FUZZ_SECONDS per target, against a debug build of
# the C extension with AddressSanitizer and UBSan made apart in build/asan (the installed
# build is left alone). Crashing inputs land in fuzz/crashes/.
FUZZ_SECONDS ?= 60
fuzz:
	DIRECTOR_DEBUG_BUILD=1 DIRECTOR_ASAN=1 $(PY) setup.py -q build_ext \
		--build-lib build/asan --build-temp build/asan-tmp
	$(PY) -m fuzz.run --seconds $(FUZZ_SECONDS) --asan build/asan
