"""lvsd's benchmarks: the data-plane comparison (``benchmarks.run``) and micro benchmarks."""
