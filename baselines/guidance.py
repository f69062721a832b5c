"""Guidance baselines: constant, limited-interval, ramps, churn, and Learn to Guide.

Every baseline is a per-step weight list w_i (w = 1 + ω; w = 1 is the plain conditional
model, Ho & Salimans 2022) run through :class:`baselines.evaluate.FixedSchedule`, except
Learn to Guide, whose weight depends on the class too (:class:`LearnedGuidance`).

- constant w, with a grid search (:func:`search_constant`);
- limited-interval guidance (Kynkäänniemi et al. 2024): w only where σ_i ∈ [σ_lo, σ_hi],
  1 elsewhere (:func:`interval_weights`, :func:`search_interval`);
- linear / cosine ramps from w = 1 at σ_max to w_max at the last step (:func:`ramp_weights`);
- EDM's S_churn: γ_i = min(S_churn / n, √2 − 1) for σ_i ∈ [S_tmin, S_tmax] (:func:`edm_churn`);
- Learn to Guide (Galashov et al. 2025, arXiv 2510.00815): ω_φ(c, s, t) ≥ 0 trained by
  :func:`train_learn_to_guide` with the self-consistency energy distance between one guided
  step x_t → x̃_s and true data noised directly to s, x_t either true data noised to t (the
  paper) or the deployed sampler's own state at t; an ℓ2 variant; the reward-tilted target
  p_λ(x|c) ∝ p(x|c)·exp(λR(x, c)) (energy distance to its noised marginal by self-normalised
  importance weights on the real samples, :func:`tilt_log_weights`, :func:`tilted_energy`);
  and the heuristic additive reward term L + γ_R·E[−R(x̂_0, c)].

Grid searches score candidates by the class-conditional energy distance to fresh true data
on *training* noise (salt :data:`baselines.schedules.TRAIN_SALT`), never on evaluation noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from tqdm.auto import trange

from diffusion_gym import metrics as M  # noqa: N812
from diffusion_gym import presets as _presets
from diffusion_gym import schedules as S  # noqa: N812
from diffusion_gym import steps as _steps
from diffusion_gym.denoisers import Denoiser
from diffusion_gym.denoisers.autoguided import AutoguidedDenoiser
from diffusion_gym.noise import make_labels, make_noise
from diffusion_gym.presets import Preset
from diffusion_gym.steps import nfe_of

from .evaluate import FixedSchedule, Strategy
from .schedules import TRAIN_SALT

__all__ = [
    "interval_weights",
    "ramp_weights",
    "edm_churn",
    "training_energy",
    "search_constant",
    "search_interval",
    "search_ramp",
    "GuidanceNet",
    "L2GConfig",
    "tilt_log_weights",
    "tilted_energy",
    "train_learn_to_guide",
    "LearnedGuidance",
]

# ---------------------------------------------------------------------------------------------
# Hand-made weight profiles


def interval_weights(sigmas, w: float, sigma_lo: float, sigma_hi: float) -> list[float]:
    """Limited-interval guidance: w_i = w where σ_lo ≤ σ_i ≤ σ_hi, else 1 (per step i)."""
    if not sigma_lo <= sigma_hi:
        raise ValueError(f"need sigma_lo <= sigma_hi, got {sigma_lo}, {sigma_hi}")
    sig = S.validate(sigmas)[:-1].tolist()
    return [float(w) if sigma_lo <= s <= sigma_hi else 1.0 for s in sig]


def ramp_weights(sigmas, w_max: float, kind: str = "linear") -> list[float]:
    """Guidance growing with progress p_i = i/(n−1) from 1 at σ_max to w_max at the last step:
    linear 1 + (w_max − 1)p, cosine 1 + (w_max − 1)(1 − cos πp)/2."""
    n = S.validate(sigmas).shape[0] - 1
    p = [i / max(n - 1, 1) for i in range(n)]
    if kind == "linear":
        return [1 + (w_max - 1) * q for q in p]
    if kind == "cosine":
        return [1 + (w_max - 1) * (1 - math.cos(math.pi * q)) / 2 for q in p]
    raise ValueError(f"kind must be 'linear' or 'cosine', got {kind!r}")


def edm_churn(sigmas, s_churn: float, s_tmin: float = 0.0, s_tmax: float = math.inf) -> list[float]:
    """EDM's churn (Karras et al. 2022, Alg. 2): γ_i = min(S_churn/n, √2 − 1) where
    S_tmin ≤ σ_i ≤ S_tmax, else 0."""
    if s_churn < 0:
        raise ValueError(f"s_churn must be >= 0, got {s_churn}")
    sig = S.validate(sigmas)[:-1].tolist()
    g = min(s_churn / len(sig), math.sqrt(2) - 1)
    return [g if s_tmin <= s <= s_tmax else 0.0 for s in sig]


# ---------------------------------------------------------------------------------------------
# Grid searches on training noise


def training_energy(
    preset: Preset, strategy: Strategy, num_samples: int = 512, seed: int = 0
) -> float:
    """Class-conditional energy distance of ``strategy``'s samples to fresh true data, on
    training noise (disjoint from the evaluation seeds)."""
    salt = TRAIN_SALT + seed
    x_T, streams = make_noise(preset, num_samples, salt)  # noqa: N806
    labels = make_labels(preset, num_samples, salt, "balanced")
    real = preset.data.sample(num_samples, labels, generator=torch.Generator().manual_seed(salt))
    with torch.no_grad():
        x0 = strategy.sample(preset, x_T, labels, streams)
    x0, real = x0.reshape(num_samples, -1), real.reshape(num_samples, -1)
    if labels is None:
        return M.energy_distance(x0, real)
    return M.class_conditional(M.energy_distance, x0, real, labels, labels, preset.num_classes)


def _search(preset, sigmas, solver, candidates: dict, num_samples, seed):
    """Score ``{key: weights}`` and return ``(best key, {key: energy})``."""
    scores = {
        k: training_energy(preset, FixedSchedule("cand", sigmas, solver, w), num_samples, seed)
        for k, w in candidates.items()
    }
    return min(scores, key=scores.get), scores


def search_constant(
    preset: Preset,
    sigmas,
    solver: str = "heun",
    grid: Sequence[float] = (0.0, 0.5, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0),
    num_samples: int = 512,
    seed: int = 0,
) -> tuple[float, dict]:
    """Best constant w on ``grid`` by training energy distance: ``(w, {w: energy})``."""
    return _search(preset, sigmas, solver, {float(w): float(w) for w in grid}, num_samples, seed)


def search_interval(
    preset: Preset,
    sigmas,
    solver: str = "heun",
    weights: Sequence[float] = (1.5, 2.0, 3.0, 4.0, 6.0),
    num_samples: int = 512,
    seed: int = 0,
) -> tuple[tuple[float, float, float], dict]:
    """Best (w, σ_lo, σ_hi) with σ_lo ≤ σ_hi among the schedule's own σ's (every contiguous
    run of steps), by training energy distance."""
    sig = S.validate(sigmas)[:-1].tolist()
    cands = {}
    for w in weights:
        for a in range(len(sig)):
            for b in range(a, len(sig)):
                lo, hi = sig[b], sig[a]
                cands[(float(w), lo, hi)] = interval_weights(sigmas, w, lo, hi)
    return _search(preset, sigmas, solver, cands, num_samples, seed)


def search_ramp(
    preset: Preset,
    sigmas,
    kind: str = "linear",
    solver: str = "heun",
    grid: Sequence[float] = (1.5, 2.0, 3.0, 4.0, 6.0),
    num_samples: int = 512,
    seed: int = 0,
) -> tuple[float, dict]:
    """Best w_max of a ``kind`` ramp on ``grid``: ``(w_max, {w_max: energy})``."""
    cands = {float(w): ramp_weights(sigmas, w, kind) for w in grid}
    return _search(preset, sigmas, solver, cands, num_samples, seed)


# ---------------------------------------------------------------------------------------------
# Learn to Guide


class GuidanceNet(nn.Module):
    """ω_φ(c, s, t) ≥ 0: an MLP of (class code, log t, log s, 1[s = 0]), softplus output.

    :param num_classes: C (> 0; guidance needs a conditional model).
    :param hidden: width of the two hidden layers.
    :param sigma_floor: s below this is fed as log(sigma_floor) (s = 0 has its own flag).
    :param init_omega: ω at initialisation (bias of the softplus), so training must move it.
    :param embed_dim: 0: the class enters one-hot; > 0: as a learned ``nn.Embedding`` of this
        size (N(0, 1) init), so classes start with different codes (used on digits).
    """

    def __init__(
        self,
        num_classes: int,
        hidden: int = 64,
        sigma_floor: float = 1e-3,
        init_omega=1.0,
        embed_dim: int = 0,
    ):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if not isinstance(embed_dim, int) or embed_dim < 0:
            raise ValueError(f"embed_dim must be an int >= 0, got {embed_dim!r}")
        self.num_classes, self.sigma_floor = int(num_classes), float(sigma_floor)
        self.embed_dim = embed_dim
        self.net = nn.Sequential(
            nn.Linear((embed_dim or num_classes) + 3, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, 1),
        ).double()
        with torch.no_grad():
            self.net[-1].weight.mul_(0.1)
            self.net[-1].bias.fill_(math.log(math.expm1(init_omega)))
        # Created after the MLP, so the one-hot net's initialisation is unchanged.
        self.embed = nn.Embedding(num_classes, embed_dim).double() if embed_dim else None

    def forward(self, c: torch.Tensor, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """ω ``[B]`` for labels ``c [B]`` and noise levels s < t ``[B]`` (σ units)."""
        floor = torch.full_like(s, self.sigma_floor)
        c = c.long()
        if bool(((c < 0) | (c >= self.num_classes)).any()):
            raise ValueError(f"class labels must lie in [0, {self.num_classes})")
        code = self.embed(c) if self.embed is not None else F.one_hot(c, self.num_classes).double()
        feats = torch.cat(
            [
                code,
                (t.double().log() / 4)[:, None],
                (torch.maximum(s.double(), floor).log() / 4)[:, None],
                (s == 0).double()[:, None],
            ],
            1,
        )
        return F.softplus(self.net(feats)).squeeze(1)


@dataclass
class L2GConfig:
    """Hyperparameters of :func:`train_learn_to_guide`.

    :param loss: ``"energy"`` (self-consistency energy distance, the paper's MMD with the
        distance kernel) or ``"l2"`` (‖x̃_s − (x_0 + sε)‖² with the x_t's own x_0 and ε).
    :param start: where the step's x_t comes from. ``"forward"`` (the paper): true data
        noised to t, x_t = x_0 + tε, with (t, s) drawn as below. ``"sampler"``: the deployed
        guided sampler's own x_t: x_T = prior_std·ε run down ``sigmas`` with the current
        ω_φ (no gradient) to σ_i, then the trained step σ_i → σ_{i+1} (i uniform over the
        schedule's steps; ``schedule_prob``, ``jitter``, ``max_gap``, ``zero_prob`` unused).
        Energy loss only (the ℓ2 target needs the x_0 that made x_t).
    :param iterations: Adam steps.
    :param conditions: conditionings (c, s, t) per batch.
    :param particles: particles per conditioning (for the energy distance, ≥ 2).
    :param lr: Adam learning rate.
    :param schedule_prob: probability of drawing (t, s) from the deployment schedule's steps
        (jittered by ``jitter`` in log σ); otherwise t is log-uniform on [σ_min, σ_max] and
        s = (1 − max_gap·u)·t with u ~ U(0, 1), or s = 0 with probability ``zero_prob``.
    :param max_gap: largest relative gap (t − s)/t of the random pairs (the paper trains on
        small gaps, dt = 0.01 of its time range; 1.0 covers every gap).
    :param zero_prob: probability of a random pair ending at s = 0.
    :param reward_weight: γ_R of the heuristic additive reward term L + γ_R·E[−R(x̂_0, c)]
        (0 = off; not derived from a target, kept for the mixture comparisons).
    :param tilt: λ of the reward-tilted target p_λ(x|c) ∝ p(x|c)·exp(λR(x, c)) (0 = the plain
        target). The energy distance to its noised marginal p_λ,s is estimated with
        self-normalised importance weights softmax(λR(y_0^k, c)) on the real target samples
        y_0^k of each conditioning (:func:`tilted_energy`); ``start="forward"`` draws x_t's
        x_0 from p_λ by resampling real samples with the same weights. Exactly the untilted
        loss at λ = 0 (uniform weights, no resampling). Derivation: docs/image_scale.md.
    :param targets: real target samples y per conditioning (0 = ``particles``); more of them
        lower the variance of the importance weights at large λ.
    :param embed_dim: :class:`GuidanceNet`'s class embedding size (0 = one-hot).
    :param guide: None: ω_φ weights classifier-free guidance, D_u + (1 + ω)(D_c − D_u). A
        preset name of a weaker model (e.g. ``"digits-imperfect-guide"``): ω_φ weights the
        autoguidance direction instead (Karras et al. 2024), D_bad + (1 + ω)(D_good −
        D_bad), both conditional (:class:`~diffusion_gym.denoisers.autoguided.AutoguidedDenoiser`);
        same loss, same targets.
    :param space: where the energy distance is taken. ``"pixel"`` (the paper): on x̃_s and
        y themselves, divided by sqrt(s² + σ_data²). ``"features"``: on T_s(x) =
        φ(D(x; s, c)), φ the data's feature map (``preset.data.features``: on digits the
        penultimate features of the shipped *training* classifier, a second network beside
        the one FD_digits uses) and D the unguided conditional model's denoised estimate at
        s (T_0(x) = φ(x)). T_s is one
        fixed map for particles and targets, so the loss is still zero where the step's law
        equals the noised data's; it only changes which differences it sees.
    :param gamma: EDM churn γ ≥ 0 at every step of the sampler ω_φ is trained for (and
        deployed with, :class:`LearnedGuidance`): the trained step and the sampler-start
        rollouts churn x to σ̂ = (1 + γ)σ with fresh noise before the guided step, as the
        harness's constant (w, γ) rows do. 0 = the deterministic sampler.
    :param hidden: width of :class:`GuidanceNet`.
    :param init_omega: ω at initialisation (near 0: from ω = 1 a first big step's loss at
        w = 2 can push the softplus into saturation, where ω stays at 0 for every step).
    :param seed: seed of data, noise and the network's init.
    """

    loss: str = "energy"
    start: str = "forward"
    iterations: int = 300
    conditions: int = 32
    particles: int = 16
    lr: float = 3e-3
    schedule_prob: float = 0.5
    jitter: float = 0.1
    max_gap: float = 1.0
    zero_prob: float = 0.1
    reward_weight: float = 0.0
    tilt: float = 0.0
    targets: int = 0
    embed_dim: int = 0
    guide: str | None = None
    space: str = "pixel"
    gamma: float = 0.0
    hidden: int = 64
    init_omega: float = 0.1
    seed: int = 0


def _draw_times(cfg: L2GConfig, sigmas, lo: float, hi: float, g) -> tuple[torch.Tensor, ...]:
    """(t, s) per conditioning: deployment steps (jittered) or random gaps."""
    b = cfg.conditions
    sig = S.validate(sigmas)
    n = sig.shape[0] - 1
    i = torch.randint(0, n, (b,), generator=g)
    jit = lambda: torch.exp(cfg.jitter * (2 * torch.rand(b, generator=g, dtype=torch.float64) - 1))  # noqa: E731
    t_sched = (sig[i] * jit()).clamp(lo, hi)
    s_sched = torch.minimum(sig[i + 1] * jit(), 0.999 * t_sched)
    t_rand = torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * torch.rand(b, generator=g))
    u = torch.rand(b, generator=g, dtype=torch.float64)
    s_rand = (1 - cfg.max_gap * u) * t_rand.double()
    s_rand = torch.where(torch.rand(b, generator=g) < cfg.zero_prob, 0 * s_rand, s_rand)
    pick = torch.rand(b, generator=g) < cfg.schedule_prob
    return torch.where(pick, t_sched, t_rand.double()), torch.where(pick, s_sched, s_rand)


def _guided_step(preset: Preset, pair, x, t, s, c, w, solver: str, gamma: float = 0.0, g=None):
    """One step with weight ``w [B]``: classifier-free guidance, or the autoguidance
    direction of ``pair`` (an
    :class:`~diffusion_gym.denoisers.autoguided.AutoguidedDenoiser`) when it is not None;
    churn ``gamma`` with noise from the generator ``g``."""
    kw = dict(class_labels=c, solver=solver)
    if gamma:
        kw.update(gamma=float(gamma), noise=torch.randn(x.shape, generator=g, dtype=x.dtype))
    if pair is None:
        return _steps.step(preset.denoiser, x, t, s, guidance=w, **kw)
    pair.weight = w
    try:
        return _steps.step(pair, x, t, s, guidance=None, **kw)
    finally:
        pair.weight = 1.0


@torch.no_grad()
def _sampler_states(
    preset: Preset, net: GuidanceNet, sig: torch.Tensor, solver: str, c, i, g, pair=None, gamma=0.0
) -> torch.Tensor:
    """x at σ_{i_j} of the guided sampler (current ω_φ, churn ``gamma``) from x_T =
    prior_std·ε, per sample j."""
    x = preset.prior_std * torch.randn(
        (c.shape[0], *preset.denoiser.shape), generator=g, dtype=preset.denoiser.dtype
    )
    for k in range(int(i.max())):
        t, s = sig[k].expand(c.shape[0]), sig[k + 1].expand(c.shape[0])
        x_next, _ = _guided_step(preset, pair, x, t, s, c, 1 + net(c, s, t), solver, gamma, g)
        x = torch.where((i > k).reshape(-1, *[1] * (x.ndim - 1)), x_next, x)  # stop at σ_i
    return x


def tilt_log_weights(rewards: torch.Tensor, tilt: float) -> torch.Tensor:
    """Self-normalised importance log-weights of samples of p(·|c) for the tilted target
    p_λ(x|c) ∝ p(x|c)·exp(λR(x, c)): log softmax(λR) along the last axis.

    The importance ratio p_λ/p is exp(λR)/Z_λ(c) with the unknown normaliser Z_λ(c) =
    E_p[exp(λR)]; self-normalising over the K samples of one conditioning estimates it, so
    weighted averages Σ_k w_k f(y_k) are consistent (bias O(1/K)) for E_{p_λ}[f]. λ = 0 gives
    exactly uniform weights 1/K.

    :param rewards: ``[..., K]`` rewards R(y_0^k, c) of K samples per conditioning.
    :param tilt: λ (any finite real; λ < 0 tilts away from high reward).
    """
    if not math.isfinite(float(tilt)):
        raise ValueError(f"tilt must be finite, got {tilt}")
    if not bool(torch.isfinite(rewards).all()):
        raise ValueError("rewards must be finite (log p(c | x) of a sample was -inf or NaN)")
    if float(tilt) == 0.0:  # exactly uniform (log_softmax of zeros may round)
        return torch.full_like(rewards, -math.log(rewards.shape[-1]), dtype=torch.float64)
    return torch.log_softmax(float(tilt) * rewards.double(), dim=-1)


def _energy_loss(
    x: torch.Tensor, y: torch.Tensor, log_w: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-conditioning energy distance 2E‖x − y‖ − E‖x − x'‖ (the repulsive term; E‖y − y'‖
    is constant in φ), x ``[B, M, d]``, y ``[B, K, d]`` → ``[B]``. With ``log_w [B, K]``
    (:func:`tilt_log_weights`) E‖x − y‖ is the importance-weighted mean over y."""
    m = x.shape[1]
    d_xy = torch.cdist(x, y)  # [B, M, K]
    if log_w is None:
        xy = d_xy.mean((1, 2))
    else:
        xy = (d_xy.mean(1) * log_w.exp().to(d_xy.dtype)).sum(1)
    xx = torch.cdist(x, x).sum((1, 2)) / (m * (m - 1))
    return 2 * xy - xx


def tilted_energy(
    x: torch.Tensor, y: torch.Tensor, log_w: torch.Tensor | None = None
) -> torch.Tensor:
    """Energy distance between the samples ``x [B, M, d]`` and the (tilted) target whose
    samples are ``y [B, K, d]`` with importance log-weights ``log_w [B, K]`` (None: uniform),
    per conditioning ``[B]``: 2 Σ_k w_k mean_j ‖x_j − y_k‖ − mean_{j≠j'} ‖x_j − x_j'‖ −
    Σ_{k≠k'} w_k w_k' ‖y_k − y_k'‖ / (1 − Σ_k w_k²). Uniform weights give the unbiased
    U-statistic; the training loss is this less its last (φ-free) term.
    """
    if x.ndim != 3 or y.ndim != 3 or x.shape[0] != y.shape[0] or x.shape[2] != y.shape[2]:
        raise ValueError(
            f"x and y must be [B, M, d] and [B, K, d], got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    if x.shape[1] < 2 or y.shape[1] < 2:
        raise ValueError("need at least 2 samples per conditioning in x and in y")
    if log_w is None:
        log_w = torch.full(y.shape[:2], -math.log(y.shape[1]), dtype=torch.float64)
    if log_w.shape != y.shape[:2]:
        raise ValueError(f"log_w must have shape {tuple(y.shape[:2])}, got {tuple(log_w.shape)}")
    w = log_w.exp().to(y.dtype)
    ww = w[:, :, None] * w[:, None, :]
    yy = (torch.cdist(y, y) * ww).sum((1, 2)) / (1 - (w**2).sum(1))
    return _energy_loss(x, y, log_w) - yy


def _feature_embedding(preset: Preset) -> Callable:
    """T(x, s, c) = φ(D(x; s, c)) ``[N, F]`` of :attr:`L2GConfig.space` ``"features"``: the
    data's feature map of the unguided conditional denoised estimate (x itself where s = 0,
    where D(x; 0) = x)."""
    features = getattr(preset.data, "features", None)
    if features is None:
        raise ValueError(
            f"space='features' needs a data feature map (data.features), which "
            f"{type(preset.data).__name__} lacks; use space='pixel'"
        )

    def embed(x: torch.Tensor, s: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        d = preset.denoiser(x, s.clamp_min(preset.sigma_min).to(x.dtype), c)
        return features(torch.where(_expand(s, x) == 0, x, d))

    return embed


def _expand(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``[B]`` → shaped to broadcast against ``x [B, ...]``, in x's dtype."""
    return v.to(x.dtype).reshape(-1, *[1] * (x.ndim - 1))


def _resample(x0: torch.Tensor, log_w: torch.Tensor, g) -> torch.Tensor:
    """Multinomial resampling (with replacement) of ``x0 [B·M, ...]`` within each of the B
    conditionings by the weights exp(``log_w [B, M]``): draws from the tilted law."""
    b, m = log_w.shape
    idx = torch.multinomial(log_w.exp(), m, replacement=True, generator=g)  # [B, M]
    rows = (torch.arange(b)[:, None] * m + idx).reshape(-1)
    return x0[rows.to(x0.device)]


def train_learn_to_guide(
    preset: Preset,
    sigmas,
    solver: str = "heun",
    config: L2GConfig | None = None,
    reward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    progress: bool = False,
    select: Callable[[GuidanceNet], float] | None = None,
    select_every: int = 0,
    selection: dict | None = None,
) -> tuple[GuidanceNet, list[float]]:
    """Learn to Guide (arXiv 2510.00815): fit ω_φ(c, s, t) by the self-consistency loss.

    For each of B conditionings (c, t, s), M particles x_t^j: ``start="forward"`` x_t^j =
    x_0^j + tε^j with x_0^j ~ p(·|c) (the paper); ``start="sampler"`` (t, s) = (σ_i, σ_{i+1})
    of ``sigmas`` and x_t^j the guided sampler's state at σ_i (current ω_φ, no gradient).
    One guided solver step with w = 1 + ω_φ(c, s, t) gives x̃_s^j; targets y^k = x_0'^k +
    sε'^k (K = ``targets`` or M of them) are independent fresh data noised directly to s.
    ``loss="energy"`` minimises mean over conditionings of [2/(MK) Σ_jk ‖x̃^j − y^k‖ −
    1/(M(M−1)) Σ_{j≠k} ‖x̃^j − x̃^k‖] / sqrt(s² + σ_data²), the unbiased energy distance less
    its constant E‖y − y'‖ term (the second sum is the repulsive term); ``"l2"``: ‖x̃_s −
    (x_0 + sε)‖² / (s² + σ_data²) with x_t's own x_0, ε (forward start only).

    ``tilt`` λ ≠ 0 targets p_λ(x|c) ∝ p(x|c)·exp(λR(x, c)): the 1/K of the first sum becomes
    the self-normalised weight softmax_k(λR(x_0'^k, c)) (:func:`tilt_log_weights`), and the
    forward start's x_0^j are resampled with the same weights. With ``reward_weight`` γ_R > 0
    the loss adds the heuristic γ_R·E[−R(x̂_0, c)], x̂_0 the guided step's denoised estimate.
    ``reward`` R(x_0 [N, ...], c [N]) → ``[N]`` defaults to log p(c | x_0) from
    ``preset.data.class_log_posterior`` (the exact Bayes classifier of a mixture, the shipped
    classifier on digits).

    :param progress: show a tqdm bar.
    :param select: ``select(net) -> score`` (lower is better: e.g. FD_digits of the deployed
        sampler on validation noise). With ``select_every`` k ≥ 1 the network is scored at
        the start, every k iterations and at the end, and the best-scoring parameters are
        returned (the loss pulls ω_φ where the score does not follow it: docs/image_scale.md).
        Started at a good constant, the result then never scores worse than it.
    :param selection: a dict filled with ``{"iteration", "score", "history": [(it, score)]}``.
    :returns: the network and the loss per iteration.
    """
    cfg = config or L2GConfig()
    if cfg.loss not in ("energy", "l2"):
        raise ValueError(f"loss must be 'energy' or 'l2', got {cfg.loss!r}")
    if cfg.start not in ("forward", "sampler"):
        raise ValueError(f"start must be 'forward' or 'sampler', got {cfg.start!r}")
    if cfg.start == "sampler" and cfg.loss == "l2":
        raise ValueError("start='sampler' needs loss='energy' (the l2 target needs x_t's x_0)")
    if preset.num_classes < 1:
        raise ValueError("Learn to Guide needs a class-conditional preset")
    if cfg.particles < 2:
        raise ValueError(f"particles must be >= 2, got {cfg.particles}")
    if not isinstance(cfg.targets, int) or cfg.targets < 0 or cfg.targets == 1:
        raise ValueError(f"targets must be 0 (= particles) or an int >= 2, got {cfg.targets!r}")
    if not math.isfinite(float(cfg.tilt)):
        raise ValueError(f"tilt must be finite, got {cfg.tilt}")
    if not (math.isfinite(float(cfg.gamma)) and cfg.gamma >= 0):
        raise ValueError(f"gamma must be a finite float >= 0, got {cfg.gamma!r}")
    if cfg.gamma and cfg.loss != "energy":
        raise ValueError("gamma > 0 needs loss='energy' (the l2 target is the ODE's coupling)")
    if cfg.space not in ("pixel", "features"):
        raise ValueError(f"space must be 'pixel' or 'features', got {cfg.space!r}")
    if cfg.space == "features" and cfg.loss != "energy":
        raise ValueError("space='features' needs loss='energy'")
    embed = _feature_embedding(preset) if cfg.space == "features" else None
    if select_every and select is None or select is not None and select_every < 1:
        raise ValueError("select and select_every >= 1 go together")
    if (cfg.reward_weight or cfg.tilt) and reward is None:
        if not hasattr(preset.data, "class_log_posterior"):
            raise ValueError("reward_weight/tilt need reward= or data.class_log_posterior")
        reward = lambda x0, c: preset.data.class_log_posterior(x0).gather(1, c[:, None])[:, 0]  # noqa: E731
    sig = S.validate(torch.as_tensor(sigmas, dtype=torch.float64))
    pair = (
        None
        if cfg.guide is None
        else AutoguidedDenoiser(preset.denoiser, _presets.make(cfg.guide).denoiser)
    )
    torch.manual_seed(cfg.seed)
    net = GuidanceNet(
        preset.num_classes, cfg.hidden, preset.sigma_min, cfg.init_omega, cfg.embed_dim
    )
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    g = torch.Generator().manual_seed(TRAIN_SALT + cfg.seed)
    b, m, history = cfg.conditions, cfg.particles, []
    k = cfg.targets or m
    best = _Best(select, selection)
    best.offer(net, 0)
    for it in trange(cfg.iterations, desc="learn-to-guide", disable=not progress, leave=False):
        c = torch.randint(0, preset.num_classes, (b,), generator=g)
        if cfg.start == "sampler":
            i = torch.randint(
                0, sig.shape[0] - 1, (b,), generator=g
            )  # deployment step σ_i → σ_{i+1}
            t, s = sig[i], sig[i + 1]
        else:
            t, s = _draw_times(cfg, sigmas, preset.sigma_min, preset.sigma_max, g)
        cc, tt, ss = c.repeat_interleave(m), t.repeat_interleave(m), s.repeat_interleave(m)
        if cfg.start == "sampler":
            x_t = _sampler_states(
                preset, net, sig, solver, cc, i.repeat_interleave(m), g, pair, cfg.gamma
            )
        else:
            x0 = preset.data.sample(b * m, cc, generator=g)
            if cfg.tilt:  # x_t ~ p_λ,t: x_0 resampled from p(·|c) by the tilt's weights
                with torch.no_grad():
                    log_w0 = tilt_log_weights(reward(x0, cc).reshape(b, m), cfg.tilt)
                x0 = _resample(x0, log_w0, g)
            eps = torch.randn(x0.shape, generator=g, dtype=x0.dtype)
            x_t = x0 + _expand(tt, x0) * eps  # forward process: true data noised to t
        # Per-conditioning scale of x_s (distances grow like s): equalises the σ range.
        scale = torch.sqrt(s**2 + preset.denoiser.sigma_data**2)
        w = 1 + net(cc, ss, tt)
        x_s, denoised = _guided_step(preset, pair, x_t, tt, ss, cc, w, solver, cfg.gamma, g)
        if cfg.loss == "energy":
            ck = c.repeat_interleave(k)
            y = preset.data.sample(b * k, ck, generator=g)
            log_w = None
            if cfg.tilt:
                with torch.no_grad():
                    log_w = tilt_log_weights(reward(y, ck).reshape(b, k), cfg.tilt)
            sk = s.repeat_interleave(k)
            y = y + _expand(sk, y) * torch.randn(y.shape, generator=g, dtype=y.dtype)
            if embed is not None:  # T_s = φ∘D(·; s, c): one fixed map for both sides
                x_s = embed(x_s, ss, cc)
                with torch.no_grad():
                    y = embed(y, sk, ck)
                scale = torch.ones_like(scale)  # features of denoised images: no σ growth
            per = _energy_loss(x_s.reshape(b, m, -1), y.reshape(b, k, -1), log_w)
            loss = (per / scale).mean()
        else:
            target = x0 + _expand(ss, x0) * eps
            per = ((x_s - target) ** 2).reshape(b, m, -1).sum(-1).mean(1)
            loss = (per / scale**2).mean()
        if cfg.reward_weight:
            loss = loss - cfg.reward_weight * reward(denoised, cc).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
        if select is not None and ((it + 1) % select_every == 0 or it + 1 == cfg.iterations):
            best.offer(net, it + 1)
    best.restore(net)
    return net, history


class _Best:
    """The best-scoring parameters seen by :func:`train_learn_to_guide` (``select``)."""

    def __init__(self, select, selection: dict | None):
        self.select, self.out = select, selection if selection is not None else {}
        self.state, self.score, self.out["history"] = None, math.inf, []

    def offer(self, net: GuidanceNet, iteration: int) -> None:
        if self.select is None:
            return
        with torch.no_grad():
            score = float(self.select(net))
        self.out["history"].append((iteration, score))
        if score < self.score:  # ties keep the earlier (the start first)
            self.score = score
            self.state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            self.out.update(iteration=iteration, score=score)

    def restore(self, net: GuidanceNet) -> None:
        if self.state is not None:
            net.load_state_dict(self.state)


class LearnedGuidance(Strategy):
    """A schedule with per-step, per-class weights w_i(c) = 1 + ω_φ(c, σ_{i+1}, σ_i).

    :param name: row name (e.g. ``"learn-to-guide"``).
    :param sigmas: the schedule (n+1 σ ending in 0).
    :param net: a trained :class:`GuidanceNet`.
    :param solver: ``"heun"`` or ``"euler"``.
    :param guide: None: w is a classifier-free guidance weight. A preset name or
        :class:`~diffusion_gym.denoisers.Denoiser` of the weaker model the net was trained to
        weigh (:attr:`L2GConfig.guide`): w weights the autoguidance direction
        D_bad + w(D_good − D_bad) (same NFE; two networks per NFE instead of one on 2B).
    :param gamma: EDM churn γ ≥ 0 at every step (:attr:`L2GConfig.gamma`, the value the net
        was trained with), noise from the harness's per-sample streams.
    """

    def __init__(
        self,
        name: str,
        sigmas,
        net: GuidanceNet,
        solver: str = "heun",
        guide=None,
        gamma: float = 0.0,
    ):
        self.name, self.net, self.solver = name, net, solver
        self.sigmas = S.validate(torch.as_tensor(sigmas, dtype=torch.float64)).clone()
        self.num_steps = self.sigmas.shape[0] - 1
        nfe_of(self.num_steps, solver)  # validates the solver
        if guide is not None and not isinstance(guide, (str, Denoiser)):
            raise TypeError(
                f"guide must be a preset name or a Denoiser, got {type(guide).__name__}"
            )
        self.guide = guide
        if not (math.isfinite(float(gamma)) and gamma >= 0):
            raise ValueError(f"gamma must be a finite float >= 0, got {gamma!r}")
        self.gamma = float(gamma)

    @property
    def nfe(self) -> int:
        return nfe_of(self.num_steps, self.solver)

    @property
    def deterministic(self) -> bool:
        return self.gamma == 0

    @torch.no_grad()
    def weights(self, class_labels: torch.Tensor) -> torch.Tensor:
        """``[n, B]`` guidance weights for the labels."""
        n, b = self.num_steps, class_labels.shape[0]
        t = self.sigmas[:-1].repeat_interleave(b)
        s = self.sigmas[1:].repeat_interleave(b)
        return 1 + self.net(class_labels.cpu().repeat(n), s, t).reshape(n, b)

    def sample(self, preset, x_T, class_labels, streams):  # noqa: N803
        if class_labels is None:
            raise ValueError(f"strategy {self.name!r} needs class labels")
        w = self.weights(class_labels).to(x_T.device)
        sig = self.sigmas.to(x_T.device)
        kw = dict(class_labels=class_labels, gamma=self.gamma, solver=self.solver)
        if self.guide is None:
            return _steps.sample(preset.denoiser, x_T, sig, guidance=w, generator=streams, **kw)
        bad = _presets.make(self.guide).denoiser if isinstance(self.guide, str) else self.guide
        pair = AutoguidedDenoiser(preset.denoiser, bad.to(x_T.device), w[0])

        def next_weight(info: dict) -> None:  # step i done: step i + 1 uses w[i + 1]
            if info["i"] + 1 < self.num_steps:
                pair.weight = w[info["i"] + 1]

        return _steps.sample(pair, x_T, sig, generator=streams, callback=next_weight, **kw)

    def describe(self) -> dict:
        per_class = self.weights(torch.arange(self.net.num_classes))  # [n, C]
        out = {
            "name": self.name,
            "nfe": self.nfe,
            "solver": self.solver,
            "sigmas": [float(v) for v in self.sigmas],
            "guidance": per_class.tolist(),
            "gamma": [self.gamma] * self.num_steps,
        }
        if self.guide is not None:
            out["autoguidance"], out["guidance"] = out["guidance"], [1.0] * self.num_steps
            out["guide"] = self.guide if isinstance(self.guide, str) else type(self.guide).__name__
        return out
