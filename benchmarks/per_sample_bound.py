"""How much can a per-sample (state-dependent) σ schedule gain over the best fixed one?

An upper bound, in hindsight: on the evaluation samples themselves, with their reference
solutions known, Adam through the unrolled sampler optimises

- **fixed**: one schedule shared by every sample (the oracle of ``baselines.schedules``, fit
  on these samples: the best any fixed schedule can do on them), and
- **per-sample**: one schedule per sample (each sample's own σ_1..σ_{K−1}; the loss is a sum
  over samples, so Adam, elementwise, optimises each independently),

both from the same start (the published schedule of the preset × solver × NFE, or
``--start schedule.json``), same iterations and step size; the best iterate is kept (per
sample for the per-sample fit). A state-dependent policy sees x_k, not x_ref, so it cannot do
better than the per-sample fit; the ratio per-sample / fixed is the most that per-sample
schedules can add on this preset, solver and NFE. The gap between the start's RMSE and the
hindsight fixed fit is the in-sample optimism of fitting on the evaluation samples.

``--train-samples N`` (> 0) adds state-dependent schedules that are *not* in hindsight, fit on
N training-noise samples (salt ``TRAIN_SALT``, disjoint from every evaluation seed) from what
the sampler knows after its first denoiser call, D(x_T; σ_max) / σ_data and the one-hot class
(σ_0 = σ_max is the same for every sample, so that call is the first NFE of every schedule and
costs nothing extra): an MLP trained through the unrolled sampler on the MSE itself, started
at the fixed schedule (``per-sample predicted (amortised MLP)``), and with ``--regress``
ridge / MLP regressions (scikit-learn) onto each training sample's hindsight-optimal log gaps.
On the evaluation seeds each sample then runs its predicted schedule: same NFE as the fixed
one, no x_ref used.

    python benchmarks/per_sample_bound.py --preset gmm-64d --solver unipc-2 --nfe 5
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from baselines import schedules as B  # noqa: N812
from baselines.evaluate import make_labels, make_noise
from diffusion_gym import presets, schedules, steps
from diffusion_gym.io import atomic_write_json
from diffusion_gym.splits import TEST_SEEDS, TRAIN_SALT

#: ``[B, K−1]`` log-gap parameters → ``[B, K+1]`` schedules (the oracle's parametrisation).
_sigmas = B._from_params


def _params(sig: torch.Tensor) -> torch.Tensor:
    """One schedule ``[K+1]`` → its log-gap parameters ``[K−1]`` (the oracle's)."""
    return B._to_params(sig, float(sig[0]))


def _run(preset, x_T, labels, sig: torch.Tensor, solver: str) -> torch.Tensor:  # noqa: N803
    """The sampler with per-sample σ ``[B, K+1]`` (differentiable under grad mode)."""
    k = sig.shape[1] - 1
    state = steps.SolverState(k) if steps.is_multistep(solver) else None
    x = x_T
    for i in range(k):
        x, _ = steps.step(preset.denoiser, x, sig[:, i], sig[:, i + 1], class_labels=labels,
                          solver=solver, state=state)  # fmt: skip
    return x


def _adam(preset, x_T, labels, x_ref, start, solver, iterations, lr, per_sample):  # noqa: N803
    """Adam on the log gaps; returns (the per-sample MSE ``[B]`` of the best iterate, its
    parameters ``[B or 1, K−1]``): per sample for ``per_sample``, of the batch otherwise."""
    b = x_T.shape[0]
    u0 = _params(start)
    u = (u0.expand(b, -1) if per_sample else u0[None]).clone().requires_grad_(True)
    opt = torch.optim.Adam([u], lr=lr)
    best, best_u = None, u.detach().clone()
    for _ in range(iterations + 1):
        sig = _sigmas(u, preset.sigma_max).expand(b, -1)
        with torch.enable_grad():
            x = _run(preset, x_T, labels, sig, solver)
            mse = ((x - x_ref) ** 2).reshape(b, -1).mean(1)
        m = mse.detach()
        if per_sample:
            better = m < best if best is not None else torch.ones_like(m, dtype=torch.bool)
            best = m if best is None else torch.where(better, m, best)
            best_u = torch.where(better[:, None], u.detach(), best_u)
        elif best is None or m.mean() < best.mean():
            best, best_u = m, u.detach().clone()
        opt.zero_grad()
        (mse.sum() if per_sample else mse.mean()).backward()
        opt.step()
    return best, best_u


def fit(preset, x_T, labels, x_ref, start, solver, iterations, lr, per_sample):  # noqa: N803
    """The per-sample MSE ``[B]`` of the best iterate (see :func:`_adam`)."""
    return _adam(preset, x_T, labels, x_ref, start, solver, iterations, lr, per_sample)[0]


def fit_params(preset, x_T, labels, x_ref, start, solver, iterations, lr):  # noqa: N803
    """Each sample's best log-gap parameters ``[B, K−1]`` (per-sample hindsight fit)."""
    return _adam(preset, x_T, labels, x_ref, start, solver, iterations, lr, True)[1]


def _features(preset, x_T, labels) -> np.ndarray:  # noqa: N803
    """What the sampler knows after its first call: D(x_T; σ_max) / σ_data, one-hot class."""
    den = preset.denoiser
    with torch.no_grad():
        d = den(x_T, preset.sigma_max, labels).reshape(len(x_T), -1) / den.sigma_data
    cols = [d.double()]
    if labels is not None and den.num_classes > 0:
        cols.append(F.one_hot(labels.clamp_min(0), den.num_classes).double())
    return torch.cat(cols, 1).numpy()


class _Amortised:
    """σ per sample from the sampler's first call: an MLP features → log gaps, trained
    through the unrolled sampler on the training samples' MSE (the objective itself, a
    pathwise gradient: no hindsight targets), its last layer started at the fixed schedule
    (zero weights, bias = the start's log gaps), the best iterate on a validation quarter of
    the training samples kept."""

    def __init__(self, preset, start, a, x_T, labels, x_ref, f):  # noqa: N803
        n = len(x_T)
        val, tr = torch.arange(n // 4), torch.arange(n // 4, n)
        ft = torch.as_tensor(f)
        self.mu, self.sd = ft[tr].mean(0), ft[tr].std(0).clamp_min(1e-6)
        torch.manual_seed(0)
        k = start.numel() - 1
        self.net = torch.nn.Sequential(
            torch.nn.Linear(ft.shape[1], 64), torch.nn.Tanh(),
            torch.nn.Linear(64, 64), torch.nn.Tanh(), torch.nn.Linear(64, k - 1),
        ).double()  # fmt: skip
        with torch.no_grad():
            self.net[-1].weight.zero_()
            self.net[-1].bias.copy_(_params(start))
        opt = torch.optim.Adam(self.net.parameters(), lr=a.amortised_lr)
        g = torch.Generator().manual_seed(0)

        def loss(idx):
            u = self.net((ft[idx] - self.mu) / self.sd)
            x = _run(preset, x_T[idx], None if labels is None else labels[idx],
                     _sigmas(u, preset.sigma_max), a.solver)  # fmt: skip
            return ((x - x_ref[idx]) ** 2).mean()

        with torch.no_grad():
            best = float(loss(val))
        self.start_val = best
        state = {k: v.clone() for k, v in self.net.state_dict().items()}
        for it in range(a.amortised_iterations):
            idx = tr[torch.randperm(len(tr), generator=g)[: a.amortised_batch]]
            with torch.enable_grad():
                opt.zero_grad()
                loss(idx).backward()
            opt.step()
            if (it + 1) % 10 == 0:
                with torch.no_grad():
                    v = float(loss(val))
                if v < best:
                    best, state = v, {k: t.clone() for k, t in self.net.state_dict().items()}
        self.net.load_state_dict(state)
        self.best_val = best
        print(f"amortised: validation RMSE {math.sqrt(self.start_val):.4g} (fixed start) -> "
              f"{math.sqrt(best):.4g}", flush=True)  # fmt: skip

    def predict(self, f: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.net((torch.as_tensor(f) - self.mu) / self.sd).numpy()


def _train_predictors(preset, start, a) -> dict:
    """Predictors features → per-sample log gaps, fit on training noise: the amortised MLP
    (trained through the sampler) and, with ``--regress``, ridge and MLP regressions onto each
    training sample's hindsight-optimal log gaps."""
    x_T, _ = make_noise(preset, a.train_samples, TRAIN_SALT)  # noqa: N806
    labels = make_labels(preset, a.train_samples, TRAIN_SALT, "balanced")
    x_ref = steps.reference_solution(preset, x_T, labels, a.reference_steps)
    f = _features(preset, x_T, labels)
    amortised = _Amortised(preset, start, a, x_T, labels, x_ref, f)
    out = {"per-sample predicted (amortised MLP)": amortised}
    if not a.regress:
        return out
    from sklearn.linear_model import RidgeCV
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    t = fit_params(preset, x_T, labels, x_ref, start, a.solver, a.iterations, a.lr).numpy()
    ridge = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13))).fit(f, t)
    net = MLPRegressor(hidden_layer_sizes=(128, 128), alpha=1e-3, max_iter=2000,
                       early_stopping=True, random_state=0)  # fmt: skip
    mlp = make_pipeline(StandardScaler(), net).fit(f, t)
    print(f"regressors fit on {a.train_samples} training samples", flush=True)
    return out | {"per-sample regressed (ridge)": ridge, "per-sample regressed (MLP)": mlp}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/per_sample_bound.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--preset", default="gmm-64d")
    p.add_argument("--solver", default="unipc-2")
    p.add_argument("--nfe", type=int, default=5)
    p.add_argument("--start", default=None, help="schedule.json (default: the published one)")
    p.add_argument("--samples", type=int, default=1024)
    p.add_argument("--seeds", type=int, nargs="+", default=list(TEST_SEEDS[:2]))
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--lr", type=float, default=0.03)
    p.add_argument("--reference-steps", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--train-samples",
        type=int,
        default=0,
        help="fit predictors of per-sample schedules on this many training samples",
    )
    p.add_argument("--amortised-iterations", type=int, default=300)
    p.add_argument("--amortised-batch", type=int, default=512)
    p.add_argument("--amortised-lr", type=float, default=1e-3)
    p.add_argument(
        "--regress",
        action="store_true",
        help="also regress hindsight-optimal per-sample schedules (ridge, MLP)",
    )
    p.add_argument("--out", default=None, help="write the figures to this JSON")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    pre = presets.make(a.preset)
    if a.start is None:
        start = schedules.load_published(a.preset, a.solver, a.nfe)
        start_name = f"published {a.preset} × {a.solver} × NFE {a.nfe}"
    else:
        start, start_name = schedules.load_schedule(a.start)["sigmas"], a.start
    if steps.nfe_of(start.numel() - 1, a.solver) != a.nfe:
        raise ValueError(f"the start schedule has {start.numel() - 1} steps: not NFE {a.nfe}")
    rows = {"start": [], "fixed (hindsight)": [], "per-sample (hindsight)": []}
    t0 = time.perf_counter()
    predictors = {}
    if a.train_samples > 0:
        predictors = _train_predictors(pre, start, a)
        rows |= {name: [] for name in predictors}
    for seed in a.seeds:
        x_T, _ = make_noise(pre, a.samples, seed)  # noqa: N806
        labels = make_labels(pre, a.samples, seed, "balanced")
        x_ref = steps.reference_solution(pre, x_T, labels, a.reference_steps)
        with torch.no_grad():
            x = steps.sample(pre.denoiser, x_T, start, class_labels=labels, solver=a.solver)
        rows["start"].append(float(((x - x_ref) ** 2).mean().sqrt()))
        for name, per in (("fixed (hindsight)", False), ("per-sample (hindsight)", True)):
            best = fit(pre, x_T, labels, x_ref, start, a.solver, a.iterations, a.lr, per)
            rows[name].append(float(best.mean().sqrt()))
        for name, reg in predictors.items():
            u = torch.as_tensor(reg.predict(_features(pre, x_T, labels)), dtype=torch.float64)
            with torch.no_grad():
                x = _run(pre, x_T, labels, _sigmas(u, pre.sigma_max), a.solver)
            rows[name].append(float(((x - x_ref) ** 2).mean().sqrt()))
        print(f"seed {seed}: " + ", ".join(f"{k} {v[-1]:.4g}" for k, v in rows.items()),
              flush=True)  # fmt: skip
    mean = {k: sum(v) / len(v) for k, v in rows.items()}
    ratio = mean["per-sample (hindsight)"] / mean["fixed (hindsight)"]
    print(f"\n{a.preset}, {a.solver}, NFE {a.nfe}, {a.samples} samples × seeds {a.seeds}, "
          f"start: {start_name}; {a.iterations} Adam iterations, lr {a.lr} "
          f"({time.perf_counter() - t0:.0f} s)\n")  # fmt: skip
    print("| schedule | RMSE to the reference (mean over seeds) | per seed |")
    print("|---|---|---|")
    for k, v in rows.items():
        print(f"| {k} | {mean[k]:.4g} | {', '.join(f'{x:.4g}' for x in v)} |")
    print(f"\nper-sample / fixed (both fit in hindsight): {ratio:.3f}")
    if a.out:
        atomic_write_json(a.out, {"args": vars(a), "rows": rows, "mean": mean, "ratio": ratio})
    return 0


if __name__ == "__main__":
    sys.exit(main())
