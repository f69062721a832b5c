"""The Guidance env's observation: its layout, its encoder and the expert states.

The columns are specified in :class:`~diffusion_gym.envs.guidance.GuidanceVectorEnv`'s
docstring (Observation Space): the scaled state x (``obs_mode="state"``), log σ_k, k/N, the
one-hot class, then (``"features"`` / ``"classifier"``) the norms of the step's guided call
and the classifier's features of x̂_0, and (renoise) the share of renoises left.
:class:`GuidanceObservation` holds what builds them, as a base class of the env (it reads the
env's schedule, denoiser, labels and renoise state): the space (:meth:`_init_obs_space`),
the encoder (:meth:`encode_obs`, used for the env's own states and for any states x at steps
k) and :meth:`expert_observations` (real data noised to σ_k, what IRL's discriminator
compares the policy's states with). :class:`_RecordingDenoiser` keeps the guided call of a
step so the features need no second denoiser call.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.error import ResetNeeded
from gymnasium.vector.utils import batch_space

from ..denoisers.base import Denoiser, DenoiserWrapper, guided_denoise
from ..noise import randn
from .obs_features import ClassifierFeatures

__all__ = ["GuidanceObservation", "NUM_FEATURES", "OBS_MODES"]

OBS_MODES = ("state", "features", "classifier")
NUM_FEATURES = 4  # ‖x‖, ‖D_c − D_u‖, ‖D_w‖, ‖x̂ − D_w‖/σ̂ (all scaled)


class _RecordingDenoiser(DenoiserWrapper):
    """Wraps a denoiser and keeps the first call after :meth:`arm` (the guided call of the
    Euler stage): its inputs ``(x̂, σ̂)`` and its output ``[2B, *shape]`` (conditional then
    unconditional half), so the features need no second computation of the churn."""

    def __init__(self, inner: Denoiser):
        super().__init__(inner)
        self.armed = False
        self.inputs: tuple[torch.Tensor, torch.Tensor] | None = None
        self.last: torch.Tensor | None = None

    def arm(self) -> None:
        self.armed, self.inputs, self.last = True, None, None

    def denoise(self, x, sigma, class_labels):
        out = self.inner.denoise(x, sigma, class_labels)
        if self.armed:
            self.armed, self.inputs, self.last = False, (x, sigma), out
        return out


class GuidanceObservation:
    """The observation half of :class:`~diffusion_gym.envs.guidance.GuidanceVectorEnv` (a
    base class of it; it uses the env's ``_sigmas``, ``_sigma_list``, ``_num_steps``,
    ``denoiser``, ``preset``, ``device``, ``dtype``, class labels and renoise state)."""

    def _init_obs_space(self, obs_mode: str) -> None:
        if obs_mode not in OBS_MODES:
            raise ValueError(f"obs_mode must be one of {OBS_MODES}, got {obs_mode!r}")
        self.obs_mode = obs_mode
        # features/classifier: statistics of the step's guided call (+ classifier features)
        self._with_stats = obs_mode != "state"
        self._features = (
            ClassifierFeatures(self.preset, self.device) if obs_mode == "classifier" else None
        )
        self._num_stats = NUM_FEATURES - 1 + (self._features.dim if self._features else 0)
        c, d = self.num_classes, self.denoiser.dim
        head = d if obs_mode == "state" else 0
        tail = 1 + self._num_stats if self._with_stats else 0
        left = 1 if self._renoise_steps else 0  # the share of renoises left, last column
        self.obs_dim = head + 2 + c + tail + left
        low = np.full(self.obs_dim, -np.inf, dtype=np.float32)
        high = np.full(self.obs_dim, np.inf, dtype=np.float32)
        low[head + 1 : head + 2 + c] = 0.0  # k/N and the one-hot lie in [0, 1]
        high[head + 1 : head + 2 + c] = 1.0
        if self._with_stats:  # the norms are >= 0 (the classifier features are not)
            low[head + 2 + c : head + 2 + c + NUM_FEATURES] = 0.0
        if left:
            low[-1], high[-1] = 0.0, 1.0
        self._check_memory()  # before the batched spaces: their bounds are [B, obs_dim] too
        self.single_observation_space = spaces.Box(low, high, dtype=np.float32)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)

    def _log_sigmas(self) -> list[float]:
        """log σ_k for the observation; σ_N = 0 is shown as log(σ_{N−1} / 10)."""
        s = self._sigma_list
        last = s[-2] / 10 if len(s) > 1 else 1e-3
        return [math.log(v if v > 0 else last) for v in s]

    @property
    def step_index(self) -> torch.Tensor:
        """``[num_envs]`` current step k of each env (all envs move in lockstep)."""
        if self._k is None:
            raise ResetNeeded("call reset() before reading step_index")
        return torch.full((self.num_envs,), self._k, dtype=torch.long, device=self.device)

    def _onehot(self, labels: torch.Tensor | None, n: int) -> torch.Tensor:
        if self.num_classes == 0:
            return torch.zeros(n, 0, device=self.device)
        if labels is None:
            raise ValueError("class_labels are required: the denoiser is class-conditional")
        return self._onehot_table[labels]

    def _encode(self, x, k: torch.Tensor | int, labels, stats: torch.Tensor | None, used=None):
        """Observation ``[n, obs_dim]`` float32 of states ``x`` at steps ``k``; ``used``
        (renoise only): host ``[n]`` renoises spent so far (None: none)."""
        n = x.shape[0]
        obs = torch.empty(n, self.obs_dim, dtype=torch.float32, device=x.device)
        sd2 = self.denoiser.sigma_data**2
        if isinstance(k, int):
            sigma = self._sigma_list[k]
            scale = torch.tensor(1.0 / math.sqrt(sigma**2 + sd2), dtype=x.dtype)
            log_s, frac = self._log_sigma[k], k / self._num_steps
        else:
            sigma = self._sigmas[k].to(x.dtype)
            scale = (sigma**2 + sd2).rsqrt()[:, None]
            log_s = torch.as_tensor(self._log_sigma, device=x.device)[k]
            frac = k.to(torch.float32) / self._num_steps
        head = self.denoiser.dim if self.obs_mode == "state" else 0
        xf = x.reshape(n, -1)
        c = self.num_classes
        if self.obs_mode == "state":
            obs[:, :head] = xf * scale
        obs[:, head] = log_s
        obs[:, head + 1] = frac
        if labels is not None and labels is self._class_labels and n == self.num_envs:
            obs[:, head + 2 : head + 2 + c] = self._onehot_c  # cached for the episode
        else:
            obs[:, head + 2 : head + 2 + c] = self._onehot(labels, n)
        if self._with_stats:
            d = self.denoiser.dim
            xnorm = xf.norm(dim=1, keepdim=True) * (scale / math.sqrt(d))
            obs[:, head + 2 + c] = xnorm.reshape(n)
            end = head + 3 + c + self._num_stats
            obs[:, head + 3 + c : end] = stats if stats is not None else 0.0
        if self._renoise_steps:
            obs[:, -1] = self._renoises_left(used, n)
        return obs

    def _denoiser_stats(self, x_hat, sigma_hat, denoised, both) -> torch.Tensor:
        """``[B, 3]``: ‖D_c − D_u‖, ‖D_w‖ (over σ_data √d) and ‖x̂ − D_w‖ / (σ̂ √d)."""
        n, d = x_hat.shape[0], self.denoiser.dim
        ref = self.denoiser.sigma_data * math.sqrt(d)
        out = torch.empty(n, 3, dtype=torch.float32, device=x_hat.device)
        if both is not None and both.shape[0] == 2 * n:
            out[:, 0] = (both[:n] - both[n:]).reshape(n, -1).norm(dim=1) / ref
        else:
            out[:, 0] = 0.0
        out[:, 1] = denoised.reshape(n, -1).norm(dim=1) / ref
        resid = (x_hat - denoised).reshape(n, -1).norm(dim=1)
        out[:, 2] = resid / (
            torch.as_tensor(sigma_hat, dtype=resid.dtype).reshape(-1) * math.sqrt(d)
        )
        return out

    def encode_obs(
        self,
        x: torch.Tensor,
        step_index: int | torch.Tensor,
        class_labels: torch.Tensor | None,
    ) -> torch.Tensor:
        """Observations ``[n, obs_dim]`` (float32, on ``device``) of states ``x [n, *shape]``
        at steps ``step_index`` (int or ``[n]`` long), encoded like the policy's states. In
        ``"features"`` mode the denoiser features come from one guided call (w = 1) at the
        states themselves (zeros where k = 0; at σ = 0 those of D(x; 0) = x itself: no guided
        difference, ‖D‖ = ‖x‖, no residual, and in ``"classifier"`` mode the features of x)."""
        x = torch.as_tensor(x, device=self.device).to(self.dtype)
        if tuple(x.shape[1:]) != self.denoiser.shape:
            raise ValueError(f"x must have shape [n, {self.denoiser.shape}], got {tuple(x.shape)}")
        n = x.shape[0]
        k = step_index
        if isinstance(k, torch.Tensor):
            k = k.to(self.device).long().reshape(-1).expand(n) if k.numel() in (1, n) else k
            if k.shape != (n,):
                raise ValueError(f"step_index must be an int or [{n}], got {tuple(k.shape)}")
            if not bool(((k >= 0) & (k <= self._num_steps)).all()):
                raise ValueError(f"step_index must lie in [0, {self._num_steps}]")
        elif not isinstance(k, int) or not 0 <= k <= self._num_steps:
            raise ValueError(f"step_index must be an int in [0, {self._num_steps}], got {k!r}")
        labels = None
        if self.num_classes:
            labels = self.denoiser.check_labels(class_labels, n, self.device)
        stats = None
        if self._with_stats:
            stats = self._stats_at(x, k, labels)
        return self._encode(x, k, labels, stats)

    @torch.no_grad()
    def _stats_at(self, x, k, labels) -> torch.Tensor:
        """Denoiser features of states ``x`` from one guided call at their own σ_k."""
        n = x.shape[0]
        kk = torch.as_tensor(k, device=self.device).expand(n)
        sigma = self._sigmas[kk].to(x.dtype)
        final = sigma == 0
        ones = torch.ones_like(sigma)
        if bool(final.all()):  # D(x; 0) = x: the statistics of x_0 itself, no guided call
            return self._call_stats(x, ones, x, None)
        safe = torch.where(final, ones, sigma)
        rec = self._recorder
        rec.arm()
        w = None if labels is None else 1.0
        denoised = guided_denoise(rec, x, safe, labels, w)
        stats = self._call_stats(x, safe, denoised, rec.last)
        if bool(final.any()):
            xf = x[final]
            stats[final] = self._call_stats(xf, ones[final], xf, None)
        stats[kk == 0] = 0.0
        return stats

    def _call_stats(self, x_hat, sigma_hat, denoised, both) -> torch.Tensor:
        """``[B, _num_stats]``: the three norms of :meth:`_denoiser_stats`, then (classifier
        mode) the standardised classifier features of x̂_0 = D_w."""
        stats = self._denoiser_stats(x_hat, sigma_hat, denoised, both)
        if self._features is None:
            return stats
        return torch.cat([stats, self._features(denoised).to(stats.device)], 1)

    @torch.no_grad()
    def expert_observations(
        self,
        step_index: torch.Tensor,
        class_labels: torch.Tensor | None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Observations ``[n, obs_dim]`` of expert states: real x_0 ~ data(c), noised to the
        σ_k of ``step_index [n]`` (x = x_0 + σ_k ε), encoded by :meth:`encode_obs`.

        ``generator`` (a ``torch.Generator``, None = the global RNG) draws both x_0 and ε, so
        a seeded generator makes the batch reproducible."""
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(  # data.sample needs a Generator: streams would seed ε alone
                f"generator must be a torch.Generator or None, got {type(generator).__name__}"
            )
        k = torch.as_tensor(step_index, device=self.device).long().reshape(-1)
        n = k.shape[0]
        data = self.preset.data
        if data is None or not hasattr(data, "sample"):
            raise ValueError("expert_observations needs preset data with sample()")
        x0 = data.sample(n, class_labels, generator).to(self.device, self.dtype)
        eps = randn(tuple(x0.shape), generator, self.dtype, self.device)
        x = x0 + self._sigmas[k].to(self.dtype).reshape(-1, *([1] * (x0.ndim - 1))) * eps
        return self.encode_obs(x, k, class_labels)
