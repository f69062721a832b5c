"""Noise splits: which harness seeds tune a config and which report its figures (issue #23).

Every evaluation seed of the harness (``baselines.evaluate.evaluate(seeds=...)``) is the salt of
the per-sample noise streams (``diffusion_gym.noise.make_noise``): seed s gives x_T, labels and
churn noise of its own. Three disjoint families of salts are in use:

- **training noise**: ``TRAIN_SALT + seed`` (``baselines.schedules.training_set``: the best-ρ
  grid, the oracle, ART's restart selection) and the environments' own episode and bank
  streams (other salts, ``diffusion_gym.envs.bank``);
- **validation seeds**: every harness seed below :data:`TEST_SEED_BASE`. Configs ship with
  validation seeds in their ``eval.seeds`` (``[0, 1, 2]`` and the like), and every tuning
  decision so far (budgets, restarts, learning rates, which variant became the config) was
  taken on them;
- **test seeds**: :data:`TEST_SEEDS`, never used for a tuning decision. Every figure that
  README.md and the docs report as a result is measured on them by ``benchmarks/claims.py``
  (docs/claims.md), which refuses any other seed for a reported figure.

A tuning decision made on a test seed spends it: move the decision to validation seeds, or
retire the seed (append a new one) and re-measure the figures that used it.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["TEST_SEEDS", "TEST_SEED_BASE", "TRAIN_SALT", "check_test_seeds", "test_seeds"]

#: Salt offset of training noise (``baselines.schedules.training_set``); above every seed here.
TRAIN_SALT = 1_000_000
#: First test seed; harness seeds below it are validation seeds.
TEST_SEED_BASE = 900_000
#: The test seeds, in the order claims use them (a claim with n seeds takes the first n).
TEST_SEEDS: tuple[int, ...] = tuple(range(TEST_SEED_BASE, TEST_SEED_BASE + 16))


def test_seeds(n: int) -> list[int]:
    """The first ``n`` test seeds (1 ≤ n ≤ ``len(TEST_SEEDS)``)."""
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= len(TEST_SEEDS):
        raise ValueError(f"n must be an int in [1, {len(TEST_SEEDS)}], got {n!r}")
    return list(TEST_SEEDS[:n])


def check_test_seeds(seeds: Sequence[int]) -> list[int]:
    """``seeds`` as a list, or ValueError naming the first one that is not a test seed."""
    seeds = [int(s) for s in seeds]
    for s in seeds:
        if s not in TEST_SEEDS:
            raise ValueError(
                f"seed {s} is not a test seed (diffusion_gym.splits.TEST_SEEDS = "
                f"{TEST_SEEDS[0]}..{TEST_SEEDS[-1]}); reported figures come from test seeds only"
            )
    return seeds
