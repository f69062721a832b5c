"""Shim: the env/sampler throughput benchmark is the module :mod:`agents.benchmark.throughput`;
``python benchmarks/throughput.py ARGS`` keeps working (same flags, same output)."""

from agents.benchmark.throughput import main

if __name__ == "__main__":
    main()
