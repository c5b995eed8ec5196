"""The crash lab and the benchmark: scenarios, broken and versioned publishers, scratch
databases. Outside the wheel; run as `python -m lab`."""
