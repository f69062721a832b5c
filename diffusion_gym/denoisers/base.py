"""The denoiser contract (EDM convention) and the guided denoiser.

A denoiser maps a noisy sample to an estimate of the clean one,
``D(x, sigma, class_labels) -> x0_hat`` with ``x_sigma = x0 + sigma * n`` (Karras et al. 2022).
Shapes: ``x: [B, *shape]``, ``sigma: [B]`` (or a scalar), ``class_labels: [B] long`` or
``None``. Inside a labelled batch the label ``-1`` (:data:`NULL_LABEL`) selects the
unconditional model for that sample, which is how a guided call evaluates the conditional
and the unconditional model in one batch of size 2B.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "NULL_LABEL",
    "Denoiser",
    "DenoiserWrapper",
    "guided_denoise",
    "check_finite",
    "check_output",
    "check_step_finite",
    "finite_flag",
    "raise_step_not_finite",
    "denoiser_name",
]

NULL_LABEL = -1


class Denoiser(nn.Module):
    """Base class of every denoiser in the package.

    Subclasses implement :meth:`denoise` on validated inputs; calling the module validates
    shapes, σ and labels first (cheap checks on metadata, one reduction for σ).

    Attributes:
        shape: shape of one sample, e.g. ``(2,)`` or ``(1, 8, 8)``.
        num_classes: number of classes, 0 for an unconditional model.
        sigma_min, sigma_max: the σ range the model was trained for (schedules use it).
        sigma_data: standard deviation of the data (EDM's σ_data).
        dtype: the floating dtype the model computes in (float64 for analytic mixtures).
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        num_classes: int,
        sigma_min: float,
        sigma_max: float,
        sigma_data: float,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.shape = tuple(int(s) for s in shape)
        self.num_classes = int(num_classes)
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self.sigma_data = float(sigma_data)
        self.dtype = dtype
        self.register_buffer("_device_probe", torch.zeros(0), persistent=False)

    @property
    def device(self) -> torch.device:
        return self._device_probe.device

    @property
    def dim(self) -> int:
        """Number of scalars in one sample."""
        n = 1
        for s in self.shape:
            n *= s
        return n

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, class_labels: torch.Tensor | None):
        """Estimate x0 from validated ``x [B, *shape]``, ``sigma [B]``, labels or None."""
        raise NotImplementedError

    def guide_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """The labels of the guiding half of a guided call (:func:`guided_denoise`):
        classifier-free guidance's unconditional model, :data:`NULL_LABEL` for every sample.
        :class:`~diffusion_gym.denoisers.autoguided.AutoguidancePair` routes that half to a
        weaker model at the sample's own class instead (autoguidance)."""
        return torch.full_like(labels, NULL_LABEL)

    def workspace_bytes(self, batch: int) -> int:
        """A lower estimate of the memory one call on ``batch`` samples allocates besides its
        input and output (for the envs' up-front memory check, :mod:`diffusion_gym.memory`):
        by default two sample-sized temporaries per sample; a subclass whose calls need more
        (a mixture's ``[B, K, d]`` terms) says so."""
        return 2 * batch * self.dim * self.itemsize

    @property
    def itemsize(self) -> int:
        """Bytes of one scalar of :attr:`dtype`."""
        return torch.empty((), dtype=self.dtype).element_size()

    def forward(
        self,
        x: torch.Tensor,
        sigma: torch.Tensor | float,
        class_labels: torch.Tensor | None = None,
        *,
        checked: bool = False,
    ) -> torch.Tensor:
        """``D(x; σ, c)`` on validated inputs. ``checked=True``: the caller has already
        checked the values of ``sigma`` and ``class_labels`` (:func:`diffusion_gym.steps.step`
        does, once per step, in one host sync): only shapes and dtypes are checked here, which
        needs no device sync."""
        x, sigma, class_labels = self.check_inputs(x, sigma, class_labels, values=not checked)
        return check_output(self.denoise(x, sigma, class_labels), x, self)

    def check_inputs(self, x, sigma, class_labels, *, values: bool = True):
        """Validate and broadcast inputs; raise ``TypeError``/``ValueError`` naming the issue.
        ``values=False`` skips the checks of the numbers (σ finite and >= 0, labels in range:
        each a host sync on a device) and keeps those of types and shapes."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating tensor, got dtype {x.dtype}")
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(
                f"x must have shape [B, {', '.join(map(str, self.shape))}], got {tuple(x.shape)}"
            )
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        if sigma.shape != (x.shape[0],):
            raise ValueError(
                f"sigma must be a scalar or have shape [{x.shape[0]}], got {tuple(sigma.shape)}"
            )
        if values and not bool(((sigma >= 0) & torch.isfinite(sigma)).all()):
            raise ValueError("sigma must be finite and >= 0 (got a negative, NaN or inf value)")
        if class_labels is not None:
            class_labels = self.check_labels(class_labels, x.shape[0], x.device, values=values)
        return x, sigma, class_labels

    def check_labels(
        self, class_labels, batch: int, device, *, values: bool = True
    ) -> torch.Tensor:
        """Validate class labels: ``[batch]`` integers in ``[-1, num_classes)`` (the range
        check, a host sync on a device, only with ``values``; see :meth:`labels_in_range`)."""
        if self.num_classes == 0:
            raise ValueError(
                "this denoiser is unconditional (num_classes=0): pass class_labels=None"
            )
        labels = torch.as_tensor(class_labels, device=device)
        if labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise TypeError(f"class_labels must be an integer tensor, got {labels.dtype}")
        labels = labels.long()
        if labels.ndim == 0:
            labels = labels.expand(batch)
        if labels.shape != (batch,):
            raise ValueError(f"class_labels must have shape [{batch}], got {tuple(labels.shape)}")
        if values and labels.numel() and not bool(self.labels_in_range(labels)):
            self.raise_labels_out_of_range(labels)
        return labels

    def labels_in_range(self, labels: torch.Tensor) -> torch.Tensor:
        """0-d bool tensor (on the labels' device, no sync): every label in ``[-1, C)``."""
        return ((labels >= NULL_LABEL) & (labels < self.num_classes)).all()

    def raise_labels_out_of_range(self, labels: torch.Tensor) -> None:
        """The ``ValueError`` of labels outside ``[-1, num_classes)`` (reads their range)."""
        raise ValueError(
            f"class_labels must lie in [0, {self.num_classes}) (or -1 for unconditional), "
            f"got values in [{int(labels.min())}, {int(labels.max())}]"
        )


class DenoiserWrapper(Denoiser):
    """A denoiser that wraps another one and shares its metadata (shape, classes, σ range,
    σ_data, dtype). Subclasses override :meth:`denoise` to observe or alter the calls; by
    default every call goes straight to ``inner``."""

    def __init__(self, inner: Denoiser):
        super().__init__(
            inner.shape,
            inner.num_classes,
            inner.sigma_min,
            inner.sigma_max,
            inner.sigma_data,
            inner.dtype,
        )
        self.inner = inner

    def denoise(self, x, sigma, class_labels):
        return self.inner.denoise(x, sigma, class_labels)

    def guide_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return self.inner.guide_labels(labels)

    def labels_in_range(self, labels: torch.Tensor) -> torch.Tensor:
        return self.inner.labels_in_range(labels)

    def workspace_bytes(self, batch: int) -> int:
        return self.inner.workspace_bytes(batch)


def guided_denoise(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigma: torch.Tensor,
    class_labels: torch.Tensor | None,
    guidance: torch.Tensor | float | None,
    *,
    checked: bool = False,
) -> torch.Tensor:
    """Classifier-free guided estimate D_w = D_u + w (D_c − D_u) (Ho & Salimans 2022), with
    D_u the half labelled by :meth:`Denoiser.guide_labels` (the unconditional model; a weaker
    model at the same class for an ``AutoguidancePair``: autoguidance).

    ``guidance`` is a scalar or a ``[B]`` tensor of per-sample weights (w = 1: conditional
    model, w = 0: unconditional). The conditional and unconditional halves go through the
    denoiser in ONE call of size 2B. Without labels (or with ``guidance=None``) this is the
    plain call ``D(x, sigma, class_labels)``. ``checked=True``: the caller has checked the
    values of σ, the labels and w (see :meth:`Denoiser.forward`); no host sync here.
    """
    if class_labels is None or guidance is None:
        return denoiser(x, sigma, class_labels, checked=checked)
    batch = x.shape[0]
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(batch)
    labels = denoiser.check_labels(class_labels, batch, x.device, values=not checked)
    if not checked:  # σ's values, once on B (the labels: just above; the guiding half's
        denoiser.check_inputs(x, sigma, None)  # are the denoiser's own, never the caller's)
    both = denoiser(
        torch.cat([x, x]),
        torch.cat([sigma, sigma]),
        torch.cat([labels, denoiser.guide_labels(labels)]),
        checked=True,
    )
    d_c, d_u = both[:batch], both[batch:]
    w = torch.as_tensor(guidance, dtype=d_c.dtype, device=x.device)
    if w.ndim > 1 or (w.ndim == 1 and w.shape[0] != batch):
        raise ValueError(f"guidance must be a scalar or have shape [{batch}], got {tuple(w.shape)}")
    if not checked and not bool(torch.isfinite(w).all()):
        raise ValueError("guidance must be finite")
    if w.ndim == 1:
        w = w.reshape(-1, *([1] * (x.ndim - 1)))
    return d_u + w * (d_c - d_u)


def check_finite(x: torch.Tensor, what: str) -> torch.Tensor:
    """Raise ``ValueError`` if ``x`` holds NaN or ±inf (never continue with NaN)."""
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{what} produced non-finite values (NaN or inf)")
    return x


def denoiser_name(denoiser) -> str:
    """The class name of ``denoiser`` (of the innermost one behind :class:`DenoiserWrapper`s),
    for error messages."""
    for _ in range(16):
        inner = getattr(denoiser, "inner", None)
        if not isinstance(inner, nn.Module):
            break
        denoiser = inner
    return type(denoiser).__name__


def check_output(out, x: torch.Tensor, denoiser) -> torch.Tensor:
    """Raise unless a denoiser's output ``out`` is a real floating tensor of exactly ``x``'s
    shape (an integer output would truncate, a complex one drop its imaginary part, a
    ``[B, 1]`` or ``[1, d]`` one broadcast silently). Metadata only: no device sync."""
    name = denoiser_name(denoiser)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"the denoiser {name} must return a tensor, got {type(out).__name__}")
    if not out.is_floating_point():  # False for integer, bool and complex dtypes
        raise TypeError(
            f"the denoiser {name} returned dtype {out.dtype}; expected a real floating tensor "
            f"(x is {x.dtype})"
        )
    if out.shape != x.shape:
        raise ValueError(
            f"the denoiser {name} returned shape {tuple(out.shape)}; expected x's shape "
            f"{tuple(x.shape)} (outputs are never broadcast)"
        )
    return out


def check_step_finite(x_next: torch.Tensor, denoised: torch.Tensor, denoiser) -> None:
    """Raise ``ValueError`` if a sampler step's result ``x_next`` holds NaN or ±inf: one
    reduction (one host sync) per step, on the step's output, so a finite but huge denoiser
    output (1e308 overflowing x) is caught as well as NaN/inf. The message says which:
    a non-finite ``denoised`` (the first stage's D), or finite values too large for the
    step's arithmetic (or a non-finite later stage). The test is :func:`finite_flag` (a
    sum: cheaper than an elementwise test), exact on its rare false alarm. The same test
    without the sync: :func:`finite_flag` as a deferred flag, then
    :func:`raise_step_not_finite`."""
    if bool(finite_flag(x_next)):
        return
    raise_step_not_finite(x_next, denoised, denoiser)


def finite_flag(x: torch.Tensor) -> torch.Tensor:
    """0-d bool tensor (no sync): whether ``sum(x)`` is finite. A sum is finite only if
    every term is, so True proves ``x`` finite; False means a NaN/inf in ``x`` or, rarely,
    finite values whose sum overflows (:func:`raise_step_not_finite` tells them apart). One
    reduction, where ``torch.isfinite(x).all()`` is three kernels and a temporary (CPU,
    4,096 × 2 float64: 6 µs against 20 µs)."""
    return torch.isfinite(x.sum())


def raise_step_not_finite(x_next: torch.Tensor, denoised: torch.Tensor, denoiser) -> None:
    """The ``ValueError`` of :func:`check_step_finite` for a step whose ``x_next`` failed
    :func:`finite_flag` (reads ``denoised`` to say why); returns if ``x_next`` is finite
    after all (a sum that overflowed)."""
    if bool(torch.isfinite(x_next).all()):
        return
    name = denoiser_name(denoiser)
    if not bool(torch.isfinite(denoised).all()):
        raise ValueError(f"the denoiser {name} produced non-finite values (NaN or inf)")
    big = float(denoised.abs().max())
    raise ValueError(
        f"the denoiser {name} made the sampler step non-finite (NaN or inf in x_next; max |D| "
        f"of the step's first stage = {big:.3g}): its outputs are too large for "
        f"{x_next.dtype} arithmetic, or non-finite in the Heun correction"
    )
