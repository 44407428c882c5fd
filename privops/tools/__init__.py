"""Programs built on privops, not part of it: the demo, the business-day simulation and
the benchmarks."""
