"""The crash lab and the benchmark: scenarios, broken and versioned publishers, scratch
databases. Outside the wheel; run as `python -m lab`."""

# The lab's command lines (`python -m lab scenario|bench`).
COMMANDS = ("scenario", "bench")
