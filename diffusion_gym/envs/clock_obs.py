"""The Clock env's observation: its column layout and its writers.

The columns are specified in :class:`~diffusion_gym.envs.clock.ClockVectorEnv`'s docstring
(Observation Space): log σ_k, k/K, the remaining clock (u* − u_k)/u*, the x features
(``obs_mode``), the solver-state history (``obs_history``), the one-hot class.
:class:`ClockObservation` holds that layout and writes it: :meth:`ClockObservation.write`
and :meth:`ClockObservation.write_history` into a float64 tensor on any device (the
reference), :meth:`ClockObservation.host` the CPU ``obs_mode="state"`` observation from
numpy columns (issue 16 item 4: the same IEEE operations, so bit for bit the float64
writer's result rounded to float32, without its cold buffer; tests/test_clock_step_paths.py).
The env keeps the state they read (σ, u, x, the episode's first rows) and when to write.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["ClockObservation", "TERMINAL_LOG_SIGMA"]

TERMINAL_LOG_SIGMA = math.log(1e-6)  # log σ feature of the terminal state (σ = 0)


class ClockObservation:
    """Layout and writers of the Clock observation ``[B, size]``.

    :param budget: K, the episode's steps (column 1 is k / K).
    :param mode: ``"state"``, ``"features"`` or ``"time"`` (the x features).
    :param shape: the shape of one sample x; ``dim`` its number of entries.
    :param sigma_data: σ_data of the denoiser (x is scaled by 1/sqrt(σ² + σ_data²)).
    :param u_star: the clock's end u*.
    :param num_classes: one-hot columns (0: unconditional).
    :param history_slots: solver-state slots shown (``obs_history``; 0: none).
    """

    def __init__(
        self,
        *,
        budget: int,
        mode: str,
        shape: Sequence[int],
        sigma_data: float,
        u_star: float,
        num_classes: int,
        history_slots: int,
    ):
        self.budget, self.mode, self.shape = budget, mode, tuple(shape)
        self.dim = math.prod(self.shape)
        self.sigma_data, self.u_star = float(sigma_data), float(u_star)
        self.n_x = {"state": self.dim, "features": 3, "time": 0}[mode]
        self.hist_width = 2 + (self.dim if mode == "state" else 1)
        self.n_hist = history_slots * self.hist_width  # H history columns after x features
        self.n_cls = num_classes
        self.size = 3 + self.n_x + self.n_hist + self.n_cls
        self._ones = (1,) * len(self.shape)  # broadcasts a [B] scale over x [B, *shape]
        self._log_scratch: tuple | None = None  # host's strided log σ column (reused)

    @property
    def hist_cols(self) -> slice:
        """The history columns (``obs_history``)."""
        start = 3 + self.n_x
        return slice(start, start + self.n_hist)

    def columns(self, out: torch.Tensor) -> tuple:
        """Views of ``out``'s columns: log σ, k/K, clock, x (shaped like x; None unless
        ``"state"``). Keep them for a buffer written every step."""
        x_cols = None
        if self.mode == "state":
            x_cols = out[:, 3 : 3 + self.dim].view(out.shape[0], *self.shape)
        return out[:, 0], out[:, 1], out[:, 2], x_cols

    def write(self, out, k, sig, u, x, prev_denoised, cols: tuple | None = None) -> None:
        """Columns 0 .. 3 + n_x of the observation at step ``k`` (all but the history and the
        one-hot) into the float64 ``out``; ``cols``: its :meth:`columns`, if kept."""
        b = x.shape[0]
        log_sigma, step, clock, x_cols = self.columns(out) if cols is None else cols
        if k < self.budget:  # σ_k > 1e-250 before the terminal state: the Clock guarantees it
            torch.log(sig, out=log_sigma)
        else:  # the terminal state σ_K = 0
            log_sigma.fill_(TERMINAL_LOG_SIGMA)
        step.fill_(k / self.budget)
        torch.div(self.u_star - u, self.u_star, out=clock)
        # σ·σ: what pow(σ, 2) computes, without its dispatch.
        scale = (sig * sig + self.sigma_data**2).sqrt().view(-1, *self._ones)
        if x_cols is not None:  # obs_mode "state"
            torch.div(x, scale, out=x_cols)
        elif self.mode == "features":
            xs = (x / scale).reshape(b, -1).to(torch.float64)
            dn = prev_denoised.reshape(b, -1).to(torch.float64) / self.sigma_data
            out[:, 3] = xs.pow(2).mean(1).sqrt()
            out[:, 4] = xs.mean(1)
            out[:, 5] = dn.pow(2).mean(1).sqrt()

    def write_history(self, out: torch.Tensor, view: list) -> None:
        """The solver-state columns from ``Solver.history_view(state, σ_data)`` (``view``:
        per slot ``(σ, scaled values)`` or None) into the float64 ``out``."""
        b, w = out.shape[0], self.hist_width
        cols = out[:, self.hist_cols].view(b, -1, w)  # [B, slots, 2 + n]
        cols.zero_()
        for j, entry in enumerate(view):
            if entry is None:
                continue
            sig, vals = entry
            vals = vals.reshape(b, -1).to(torch.float64)
            cols[:, j, 0] = 1.0
            cols[:, j, 1] = torch.log(torch.as_tensor(sig, dtype=torch.float64)).reshape(-1)
            if self.mode == "state":
                cols[:, j, 2:] = vals
            else:
                cols[:, j, 2] = vals.pow(2).mean(1).sqrt()

    def host(self, k: int, sigma, u, x, rows0) -> np.ndarray:
        """CPU, ``"state"`` without history: :meth:`write`'s observation rounded to float32,
        from numpy columns of the CPU tensors σ, u, x [B, *shape] (IEEE arithmetic, sqrt and
        casts: the same bits; log σ stays torch's, into a strided column as in the buffer:
        the same scalar loop), written into a copy of ``rows0`` (the episode's first
        observations, whose one-hot part is kept; None: unconditional)."""
        b = x.shape[0]
        if rows0 is None:  # every column is written below
            obs = np.empty((b, self.size), dtype=np.float32)
        else:  # a copy of the first-observation rows keeps their one-hot part
            obs = rows0.numpy().copy()
        if k < self.budget:  # σ_k > 1e-250 before the terminal state (see write)
            if self._log_scratch is None or len(self._log_scratch[1]) != b:
                col = torch.empty(b, 2, dtype=torch.float64)[:, 0]  # strided (see above)
                self._log_scratch = (col, col.numpy())
            log_sigma, log_np = self._log_scratch
            torch.log(sigma, out=log_sigma)
            obs[:, 0] = log_np
        else:
            obs[:, 0] = TERMINAL_LOG_SIGMA
        obs[:, 1] = k / self.budget
        clock = self.u_star - u.numpy()
        clock /= self.u_star
        obs[:, 2] = clock  # (u* − u_k)/u*
        sig = sigma.numpy()
        scale = sig * sig  # σ² + σ_data², then its square root
        scale += self.sigma_data**2
        np.sqrt(scale, out=scale)
        xf = x.numpy().reshape(b, -1)
        if self.dim <= 4:  # one 1-D division per column (numpy's 2-D loop is slow for few)
            for j in range(self.dim):
                obs[:, 3 + j] = xf[:, j] / scale
        else:
            obs[:, 3 : 3 + self.dim] = xf / scale[:, None]
        return obs
