"""Shared test settings: one torch thread per test process.

CI runs the suite with ``pytest -n 2`` on 2 cores; more intra-op threads per worker only
oversubscribe the cores (a 256-step sampler run measured 31 s with 2 threads against 3.5 s
with 1 on the shared machine).
"""

import torch

torch.set_num_threads(1)
