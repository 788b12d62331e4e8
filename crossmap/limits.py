"""Upper bounds on what a program or a command line may ask for, so that a corrupt or hostile
value ends in a clear error instead of a run that never ends or a memory allocation that fails.
Each bound is far above what any real network needs."""

from __future__ import annotations

MAX_TICKS = 10_000  # input ticks of a sample, and separately the pipeline latency
MAX_CLASSES = 65_536
MAX_INPUTS = 2**20  # input channels of a program
MAX_SEED = 2**31 - 1  # the place pass hands the seed to CP-SAT, whose seed is a 32-bit integer
MAX_SAMPLES = 10**8  # --limit, --random
MAX_ENSEMBLE = 1024
MAX_WORKERS = 1024
MAX_BATCH = 2**20
