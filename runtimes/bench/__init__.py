"""The benchmark harness behind `roots-edge bench`: `harness` (the driver: one subprocess per artifact),
`worker` (what runs in it), `report` (markdown, CSV, JSON, plot). Machine facts live in `runtimes/machine.py`,
which the backends use too (int8 kernel classes)."""
from roots_edge.runtimes.bench.harness import BenchConfig, BenchError, bench, decoder_quality, weight_bytes

__all__ = ["BenchConfig", "BenchError", "bench", "decoder_quality", "weight_bytes"]
