"""Coverage-guided fuzzing (atheris): ``make fuzz`` runs each target for a bounded time.

Targets (``fuzz.targets``): the packet parser and NAT rewrite on both fast paths at once
(differential: the C extension, built with AddressSanitizer and UBSan, and the Python twin
must give the same verdict, bytes and table), fragment reassembly, the lvs.cf parser
(only ConfigError may come out, and what parses must print and parse back equal) and the
control protocol (every line gets an answer; no exception but a refusal). ``fuzz.run``
drives them, one process each; a crash leaves its input in ``fuzz/crashes/`` and becomes
a regression test in tests/unit/test_fuzz_regressions.py.
"""
