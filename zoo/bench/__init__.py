"""The benchmark harness behind ``zoo bench``: throughput, latency percentiles, peak memory, FLOPs and MFU.

See `zoo.bench.harness.benchmark` for what is timed and how; `zoo.bench.peaks` for the peak table and its
sources; `zoo.bench.adapters` for how a model's synthetic inputs and real loss are made.
"""
