"""The Clock env's reference bank: (x_T, class, x_ref) triples solved once, drawn by seed.

The reference solve costs far more than an episode (hundreds of NFE against K), so it runs
once per env, batched, at the first reset (or at :meth:`ReferenceBank.build`); every episode
then draws one entry by its own stream.
"""

from __future__ import annotations

import time

import torch

from .. import steps
from ..denoisers.base import Denoiser
from ..noise import derive_keys, draw_normal

__all__ = ["ReferenceBank", "BANK_SALT"]

BANK_SALT = 0x0C10C  # separates the bank's streams from the episodes' streams
_CHUNK = 1024  # entries per batched reference solve


class ReferenceBank:
    """``size`` entries (x_T, class, x_ref, x''_0) of one denoiser.

    Entry j: x_T = ``prior_std`` · draw 0 of the stream ``derive_keys(j, salt=BANK_SALT +
    seed)``; its class drawn from ``label_choices`` (uniformly; an empty tensor: the data's
    class histogram ``class_weights``, else uniform; None: unconditional) with a
    ``torch.Generator`` seeded by ``seed``; x_ref solves the same PF-ODE from x_T with
    :func:`~diffusion_gym.steps.reference_solve` (``reference_steps`` Heun steps on
    karras(ρ=7), Richardson-extrapolated unless ``extrapolate`` is False, CFG weight
    ``guidance``, None = the plain conditional call); x''_0 = d²x/dσ² at σ_max from the fine
    solve's first step (for ``reward="local_error"``).

    The tensors are None until :meth:`build` (the env calls it at its first reset).
    """

    def __init__(
        self,
        denoiser: Denoiser,
        size: int,
        *,
        prior_std: float,
        seed: int = 0,
        label_choices: torch.Tensor | None = None,
        class_weights: torch.Tensor | None = None,
        reference_steps: int = 128,
        extrapolate: bool = True,
        guidance: float | None = None,
        device: torch.device | str = "cpu",
    ):
        self.denoiser, self.size, self.seed = denoiser, int(size), int(seed)
        self.prior_std, self.reference_steps = float(prior_std), int(reference_steps)
        self.extrapolate, self.guidance = extrapolate, guidance
        self.label_choices, self.class_weights = label_choices, class_weights
        self.device = torch.device(device)
        self._x_T: torch.Tensor | None = None
        self._x_ref: torch.Tensor | None = None
        self._labels: torch.Tensor | None = None
        self._d2: torch.Tensor | None = None
        self._build_seconds: float | None = None

    @property
    def built(self) -> bool:
        return self._x_T is not None

    @property
    def x_T(self) -> torch.Tensor | None:  # noqa: N802 - the paper's name
        """``[size, *shape]`` start states (None before :meth:`build`)."""
        return self._x_T

    @property
    def x_ref(self) -> torch.Tensor | None:
        """``[size, *shape]`` reference solutions at σ = 0 (None before :meth:`build`)."""
        return self._x_ref

    @property
    def labels(self) -> torch.Tensor | None:
        """``[size]`` long class labels (−1: unconditional call), None if unconditional."""
        return self._labels

    @property
    def d2(self) -> torch.Tensor | None:
        """``[size, *shape]`` d²x/dσ² at σ_max (None before :meth:`build`)."""
        return self._d2

    @property
    def build_seconds(self) -> float | None:
        """Wall time of the last :meth:`build` (None before)."""
        return self._build_seconds

    @torch.no_grad()
    def build(self) -> ReferenceBank:
        """Draw x_T and labels and solve every x_ref (chunks of 1024, batched); returns self."""
        t0 = time.perf_counter()
        den, n, dev = self.denoiser, self.size, self.device
        keys = derive_keys(torch.arange(n, device=dev), salt=BANK_SALT + self.seed)
        x_T = self.prior_std * draw_normal(keys, 0, den.shape, den.dtype)  # noqa: N806
        labels = self._draw_labels(n)
        x_ref, d2 = torch.empty_like(x_T), torch.empty_like(x_T)
        for lo in range(0, n, _CHUNK):
            sl = slice(lo, min(lo + _CHUNK, n))
            x_ref[sl], d2[sl] = self._reference(x_T[sl], None if labels is None else labels[sl])
        self._x_T, self._x_ref, self._labels, self._d2 = x_T, x_ref, labels, d2
        self._build_seconds = time.perf_counter() - t0
        return self

    def _draw_labels(self, n: int) -> torch.Tensor | None:
        choices = self.label_choices
        if choices is None:
            return None
        g = torch.Generator().manual_seed(self.seed)
        if choices.numel() == 0:  # the data's class histogram, else uniform
            w = self.class_weights
            w = torch.ones(self.denoiser.num_classes) if w is None else w.detach().cpu()
            return torch.multinomial(w.double(), n, replacement=True, generator=g).to(self.device)
        idx = torch.randint(len(choices), (n,), generator=g)
        return choices[idx].to(self.device)

    def _reference(self, x_T, labels):  # noqa: N803
        first: list[dict] = []

        def keep(info):  # x_1 and D at σ_0, σ_1, for x'' at σ_max
            if info["i"] < 2:
                first.append(info)

        x_ref = steps.reference_solve(
            self.denoiser,
            x_T,
            self.reference_steps,
            class_labels=labels,
            guidance=1.0 if self.guidance is None else self.guidance,
            extrapolate=self.extrapolate,
            callback=keep,
        )
        if len(first) < 2:  # a one-step reference has no second point
            return x_ref, torch.zeros_like(x_T)
        s_0, s_1 = first[0]["sigma"], first[1]["sigma"]
        d_0 = (x_T - first[0]["denoised"]) / s_0
        d_1 = (first[0]["x"] - first[1]["denoised"]) / s_1
        return x_ref, (d_1 - d_0) / (s_1 - s_0)

    def differences(self, other: ReferenceBank) -> list[str]:
        """The parameters in which ``other`` defines a different bank (empty: the same
        entries). The denoiser must be the same object. The solver is not a parameter: x_ref
        is the ODE's solution, whatever solver an env runs, so envs with different solvers can
        share one bank (``ClockVectorEnv(bank=...)``)."""
        out = [] if self.denoiser is other.denoiser else ["denoiser (must be the same object)"]
        for name in ("size", "seed", "prior_std", "reference_steps", "extrapolate", "guidance",
                     "device"):  # fmt: skip
            if getattr(self, name) != getattr(other, name):
                out.append(name)
        for name in ("label_choices", "class_weights"):
            a, b = getattr(self, name), getattr(other, name)
            same = (a is None and b is None) or (
                a is not None and b is not None and a.shape == b.shape
                and bool(torch.equal(a.cpu(), b.cpu()))
            )  # fmt: skip
            if not same:
                out.append(name)
        return out

    def __repr__(self) -> str:
        return f"ReferenceBank(size={self.size}, seed={self.seed}, built={self.built})"
