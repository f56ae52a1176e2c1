"""The fuzz targets run clean on their seed corpora (what ``make fuzz`` starts from), so the
harness itself stays working. Inputs the fuzzer once crashed on are replayed here too:
fuzz/crashes/ holds none for the product (the crashes found so far were in the harness)."""

from __future__ import annotations

from pathlib import Path

import pytest

targets = pytest.importorskip("fuzz.targets")

CRASHES = Path(__file__).resolve().parents[2] / "fuzz" / "crashes"
# Inputs that crashed the harness once: a fragment cut short at the end of the input.
REGRESSIONS = {"reassembly": [bytes.fromhex("001c" + "00" * 16 + "001c" + "00" * 11)]}


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_seed_corpus_runs_clean(name: str) -> None:
    for seed in [*targets.seeds(name), *REGRESSIONS.get(name, [])]:
        targets.TARGETS[name](seed)
