"""Settings for one experiment of bench/queue_overhead.py (`--save-limit N`): the engine's own settings with
another django-q2 `save_limit`, to measure what pruning saved results costs per task. Never used by the engine."""

import os

from config.settings import *  # noqa: F403
from config.settings import Q_CLUSTER

Q_CLUSTER = {**Q_CLUSTER, "save_limit": int(os.environ["BENCH_Q_SAVE_LIMIT"])}
