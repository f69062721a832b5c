"""Per-sample, counter-based random streams.

A trajectory must depend only on its own seed: not on the global RNG, not on how many other
trajectories share its batch, and not on the device. One ``torch.Generator`` per sample
(EDM's ``StackedRandomGenerator``) gives that, but costs a Python loop over the batch at every
draw. :class:`SampleStreams` gives the same guarantee with one batched computation: sample
``i`` draws element ``j`` of its ``n``-th draw as a hash of ``(key_i, n, j)`` (SplitMix64's
finaliser), turned into a standard normal by the inverse CDF. All of it is int64 tensor
arithmetic, so the numbers are identical on CPU and CUDA. On CPU, :func:`derive_keys` and
:func:`draw_uniform_int` run the same hash on uint64 numpy arrays (logical shifts, in-place
wrapping products: about half the work), bit for bit equal to the tensor code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from .hostpaths import on_host

if TYPE_CHECKING:  # annotations only: presets import this module (through data)
    from .presets import Preset

__all__ = [
    "SampleStreams",
    "derive_keys",
    "draw_normal",
    "draw_uniform",
    "draw_uniform_int",
    "make_noise",
    "make_labels",
]

_GOLDEN = -7046029254386353131  # 0x9E3779B97F4A7C15 as a signed int64
_MIX1 = -4658895280553007687  # 0xBF58476D1CE4E5B9
_MIX2 = -7723592293110705685  # 0x94D049BB133111EB
_STREAM = 0x632BE59BD9B4E019  # separates the counter from the element index
# The same constants as uint64 numpy scalars (the host path).
_MIX1_U, _MIX2_U = np.uint64(_MIX1 % 2**64), np.uint64(_MIX2 % 2**64)
_GOLDEN_U, _STREAM_U = np.uint64(_GOLDEN % 2**64), np.uint64(_STREAM)


def _shr(x: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's ``>>`` is arithmetic)."""
    return (x >> s) & ((1 << (64 - s)) - 1)


def _mix(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64 finaliser: a bijective avalanche on int64 (wrapping arithmetic)."""
    z = (z ^ _shr(z, 30)) * _MIX1
    z = (z ^ _shr(z, 27)) * _MIX2
    return z ^ _shr(z, 31)


def _mix_host(z: np.ndarray, tmp: np.ndarray) -> np.ndarray:
    """:func:`_mix` in place on a uint64 array (numpy's ``>>`` on uint64 is logical and its
    products wrap), with ``tmp`` a scratch array of the same shape."""
    for shift, mult in ((30, _MIX1_U), (27, _MIX2_U), (31, None)):
        np.right_shift(z, np.uint64(shift), out=tmp)
        z ^= tmp
        if mult is not None:
            z *= mult
    return z


def _u64(x: torch.Tensor) -> np.ndarray:
    """The int64 CPU tensor ``x`` as a uint64 array of at least one dimension (shares memory;
    two's complement, so wrapping arithmetic agrees with int64 tensors')."""
    return np.atleast_1d(x.numpy().view(np.uint64))


def _shaped(z: np.ndarray, a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """``z``, computed on :func:`_u64` views of ``a`` and ``b``, in their broadcast shape
    (only two 0-d inputs give a different one: ``()``, not ``(1,)``)."""
    return z.reshape(()) if a.ndim == 0 and b.ndim == 0 else z


def derive_keys(seeds: torch.Tensor | np.ndarray | int, salt: int = 0) -> torch.Tensor:
    """Hash integer seeds (and a salt, e.g. an episode counter) into stream keys (int64)."""
    seeds = torch.as_tensor(seeds, dtype=torch.int64)
    salt = torch.as_tensor(salt, dtype=torch.int64, device=seeds.device)
    if on_host(seeds):  # host path: the same hash, about 2x faster
        return _derive_keys_host(seeds, salt)
    return _derive_keys_tensor(seeds, salt)


def _derive_keys_tensor(seeds: torch.Tensor, salt: torch.Tensor) -> torch.Tensor:
    """:func:`derive_keys` on int64 tensors (any device): the reference definition."""
    return _mix(_mix(seeds * _GOLDEN + 1) ^ (salt * _STREAM))


def _derive_keys_host(seeds: torch.Tensor, salt: torch.Tensor) -> torch.Tensor:
    """:func:`_derive_keys_tensor` of CPU tensors, computed on uint64 numpy arrays."""
    z = _u64(seeds) * _GOLDEN_U  # a new array (the seeds stay untouched)
    z += np.uint64(1)
    z = _mix_host(z, np.empty_like(z))
    z = np.bitwise_xor(z, _u64(salt) * _STREAM_U)  # broadcast to the output's shape
    z = _mix_host(z, np.empty_like(z))
    return torch.from_numpy(_shaped(z.view(np.int64), seeds, salt))


def _uniform53(bits: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Map 64 random bits to a uniform in the open interval (0, 1)."""
    # The top 53 bits; 2^53 − 1 is capped one lower, since (2^53 − 0.5) 2^-53 rounds to 1.0
    # (ndtri(1) = inf). Every other value maps to a distinct u in (0, 1).
    top = _shr(bits, 11).clamp(max=2**53 - 2).to(torch.float64)
    return ((top + 0.5) * 2.0**-53).to(dtype)


def draw_normal(
    keys: torch.Tensor, counter: int | torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype
) -> torch.Tensor:
    """Standard normals of shape ``[B, *shape]``: row ``i`` is a function of ``keys[i]`` and
    ``counter`` only. ``counter`` is a scalar or a ``[B]`` tensor of per-sample counters."""
    n = int(np.prod(shape)) if len(shape) else 1
    idx = torch.arange(n, device=keys.device, dtype=torch.int64)
    counter = torch.as_tensor(counter, dtype=torch.int64, device=keys.device)
    if counter.ndim == 1:
        counter = counter[:, None]
    base = _mix(keys[:, None] ^ (counter * _STREAM))
    u = _uniform53(_mix(base + idx[None, :] * _GOLDEN), torch.float64)
    z = torch.special.ndtri(u).to(dtype)
    return z.reshape(keys.shape[0], *shape)


def draw_uniform_int(keys: torch.Tensor, counter: int, high: int) -> torch.Tensor:
    """Integers uniform in ``[0, high)``, one per key (for per-episode class labels)."""
    counter = torch.as_tensor(counter, dtype=torch.int64, device=keys.device)
    if on_host(keys):  # host path: the same hash and rounding, about 2x faster
        return _draw_uniform_int_host(keys, counter, high)
    return _draw_uniform_int_tensor(keys, counter, high)


def _stream_bits_tensor(keys: torch.Tensor, counter: torch.Tensor) -> torch.Tensor:
    """The mixed bits behind :func:`draw_uniform_int` and :func:`draw_uniform` (any device)."""
    return _mix(_mix(keys ^ (counter * _STREAM)) + 12345)


def _stream_bits_host(keys: torch.Tensor, counter: torch.Tensor) -> np.ndarray:
    """:func:`_stream_bits_tensor` of CPU tensors, on uint64 numpy arrays (a new array)."""
    z = np.bitwise_xor(_u64(keys), _u64(counter) * _STREAM_U)
    tmp = np.empty_like(z)
    z = _mix_host(z, tmp)
    z += np.uint64(12345)
    return _mix_host(z, tmp)


def _draw_uniform_int_tensor(keys: torch.Tensor, counter: torch.Tensor, high: int) -> torch.Tensor:
    """:func:`draw_uniform_int` on int64 tensors (any device): the reference definition."""
    u = _uniform53(_stream_bits_tensor(keys, counter), torch.float64)
    return torch.clamp((u * high).long(), max=high - 1)


def _draw_uniform_int_host(keys: torch.Tensor, counter: torch.Tensor, high: int) -> torch.Tensor:
    """:func:`_draw_uniform_int_tensor` of CPU tensors, computed on uint64 numpy arrays."""
    out = _uniform_int_host(_stream_bits_host(keys, counter), high)
    return torch.from_numpy(_shaped(out, keys, counter))


def draw_uniform(keys: torch.Tensor, counter: int) -> torch.Tensor:
    """Float64 uniforms in (0, 1), one per key: the u behind :func:`draw_uniform_int` (which
    is ``min(floor(u · high), high − 1)`` of it), for inverse-CDF draws."""
    counter = torch.as_tensor(counter, dtype=torch.int64, device=keys.device)
    if on_host(keys):
        u = _uniform53_host(_stream_bits_host(keys, counter))
        return torch.from_numpy(_shaped(u, keys, counter))
    return _uniform53(_stream_bits_tensor(keys, counter), torch.float64)


def _uniform53_host(bits: np.ndarray) -> np.ndarray:
    """``_uniform53(bits, float64)`` on uint64 bits: top 53 bits capped at 2^53 − 2, then
    (top + 0.5) 2^-53, the same float64 operations in the same order."""
    u = np.minimum(bits >> np.uint64(11), np.uint64(2**53 - 2)).astype(np.float64)
    u += 0.5
    u *= 2.0**-53
    return u


def _uniform_int_host(bits: np.ndarray, high: int) -> np.ndarray:
    """``clamp((_uniform53(bits) * high).long(), max=high − 1)`` on uint64 bits: the same
    float64 operations in the same order (:func:`_uniform53_host`, times high, truncation),
    so the same roundings."""
    u = _uniform53_host(bits)
    u *= float(high)  # the float64 product that ``u * high`` forms on tensors
    return np.minimum(u.astype(np.int64), high - 1)


class SampleStreams:
    """A batch of independent random streams, one per sample.

    Each call to :meth:`randn` advances every stream by one draw. Row ``i`` of every draw
    depends only on ``keys[i]`` and on how many draws came before, so sub-batches of the
    same keys reproduce the same numbers. Pass it wherever the package accepts a
    ``generator``.

    :param keys: ``[B]`` int64 stream keys, e.g. from :func:`derive_keys`.
    """

    def __init__(self, keys: torch.Tensor):
        if not isinstance(keys, torch.Tensor) or keys.dtype != torch.int64 or keys.ndim != 1:
            raise TypeError("keys must be a 1-D torch.int64 tensor (one key per sample)")
        self.keys = keys
        self.counter = 0

    @classmethod
    def from_seeds(cls, seeds, device: torch.device | str = "cpu") -> SampleStreams:
        """Streams for integer seeds (one per sample); equal seeds give equal streams."""
        return cls(derive_keys(torch.as_tensor(seeds, dtype=torch.int64, device=device)))

    def __len__(self) -> int:
        return self.keys.shape[0]

    def randn(self, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Next draw of standard normals, ``[B, *shape]``."""
        z = draw_normal(self.keys, self.counter, tuple(shape), dtype)
        self.counter += 1
        return z

    def __getitem__(self, index) -> SampleStreams:
        sub = SampleStreams(self.keys[index].reshape(-1))
        sub.counter = self.counter
        return sub


def randn(
    shape: tuple[int, ...],
    generator: torch.Generator | SampleStreams | None,
    dtype: torch.dtype,
    device: torch.device | str,
) -> torch.Tensor:
    """Standard normals of ``shape`` (``shape[0]`` = batch) from either kind of generator."""
    if isinstance(generator, SampleStreams):
        if len(generator) != shape[0]:
            raise ValueError(
                f"SampleStreams holds {len(generator)} streams but the batch has {shape[0]}"
            )
        return generator.randn(tuple(shape[1:]), dtype).to(device)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator, a SampleStreams or None, got {type(generator)}"
        )
    gen_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, dtype=dtype, device=gen_device).to(device)


# ---------------------------------------------------------------------------------------------
# The seeding contract: every strategy and env of one seed sees the same x_T, streams, labels


def make_noise(preset: Preset, num_samples: int, seed: int) -> tuple[torch.Tensor, SampleStreams]:
    """x_T = prior_std · draw 0 of each sample's stream, and the streams (counter reset).

    Sample i of seed s uses key ``derive_keys(i, salt=s)``: the same for every strategy."""
    den = preset.denoiser
    keys = derive_keys(torch.arange(num_samples, device=den.device), salt=int(seed))
    x_T = preset.prior_std * draw_normal(keys, 0, den.shape, den.dtype)  # noqa: N806
    return x_T.to(den.device), SampleStreams(keys)


def make_labels(
    preset: Preset, num_samples: int, seed: int, class_labels="balanced"
) -> torch.Tensor | None:
    """Labels for one seed: ``"balanced"`` (i mod C), ``"data"`` (drawn from the data's class
    histogram with a generator seeded by ``seed``), an int (one class for all), a ``[N]``
    tensor, or None (unconditional). An unconditional preset always gets None."""
    C = preset.num_classes  # noqa: N806
    if C == 0 or class_labels is None:
        return None
    dev = preset.denoiser.device
    if isinstance(class_labels, str):
        if class_labels == "balanced":
            return torch.arange(num_samples, device=dev) % C
        if class_labels == "data":
            g = torch.Generator().manual_seed(10_007 + int(seed))
            return preset.data.sample_labels(num_samples, generator=g).to(dev)
        raise ValueError(
            f"class_labels must be 'balanced', 'data', an int or a tensor, got {class_labels!r}"
        )
    if isinstance(class_labels, int):
        if not 0 <= class_labels < C:
            raise ValueError(f"class_labels={class_labels} out of range [0, {C})")
        return torch.full((num_samples,), class_labels, dtype=torch.long, device=dev)
    labels = torch.as_tensor(class_labels, dtype=torch.long, device=dev)
    if labels.shape != (num_samples,) or labels.min() < 0 or labels.max() >= C:
        raise ValueError(f"class_labels must be [{num_samples}] ints in [0, {C})")
    return labels
