"""Per-sample counter-based noise streams."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffusion_gym.noise import (
    _STREAM,
    SampleStreams,
    _derive_keys_host,
    _derive_keys_tensor,
    _draw_uniform_int_host,
    _draw_uniform_int_tensor,
    _mix,
    _uniform53,
    _uniform_int_host,
    derive_keys,
    draw_normal,
    draw_uniform,
    draw_uniform_int,
    make_labels,
    make_noise,
    randn,
)


def _ks_normal(z: torch.Tensor) -> float:
    """Kolmogorov–Smirnov statistic of ``z`` against N(0, 1)."""
    z = z.reshape(-1).double().sort().values
    n = z.numel()
    cdf = torch.special.ndtr(z)
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return float(torch.maximum(i / n - cdf, cdf - (i - 1) / n).max())


def test_deterministic_and_seed_dependent():
    a = SampleStreams.from_seeds([1, 2, 3]).randn((4,), torch.float64)
    b = SampleStreams.from_seeds([1, 2, 3]).randn((4,), torch.float64)
    c = SampleStreams.from_seeds([1, 2, 4]).randn((4,), torch.float64)
    assert torch.equal(a, b)
    assert torch.equal(a[:2], c[:2]) and not torch.equal(a[2], c[2])
    # Equal seeds give equal streams; the salt separates episodes.
    twice = draw_normal(derive_keys(torch.tensor([7, 7])), 0, (3,), torch.float64)
    once = draw_normal(derive_keys(torch.tensor([7])), 0, (3,), torch.float64)
    assert torch.equal(twice[0], twice[1]) and torch.equal(twice[:1], once)
    assert not torch.equal(derive_keys(5, salt=0), derive_keys(5, salt=1))


def test_moments_and_normality():
    """One stream of 200k values and 2000 streams of 100: mean 0, std 1, KS-normal."""
    z = SampleStreams.from_seeds([0]).randn((200_000,), torch.float64)
    assert abs(float(z.mean())) < 4 / math.sqrt(z.numel())
    assert abs(float(z.std()) - 1) < 4 / math.sqrt(2 * z.numel())
    # KS 1% critical value ≈ 1.63 / sqrt(n).
    assert _ks_normal(z) < 1.63 / math.sqrt(z.numel())
    w = SampleStreams.from_seeds(torch.arange(2000)).randn((100,), torch.float64)
    assert _ks_normal(w) < 1.63 / math.sqrt(w.numel())
    # Fourth moment of a normal is 3.
    assert abs(float((z**4).mean()) - 3) < 0.1


def test_rows_counters_and_elements_are_uncorrelated():
    n = 4000
    keys = derive_keys(torch.arange(64))
    draws = [draw_normal(keys, k, (n,), torch.float64) for k in range(3)]
    bound = 4 / math.sqrt(n)
    # Adjacent seeds (rows) within one draw.
    rows = torch.corrcoef(draws[0])
    off = rows - torch.eye(64, dtype=torch.float64)
    assert float(off.abs().max()) < 1.3 * bound
    # The same stream at adjacent counters.
    for a, b in [(0, 1), (1, 2)]:
        c = (draws[a] * draws[b]).mean(1)
        assert float(c.abs().max()) < 1.3 * bound
    # Adjacent elements of one draw.
    lag = (draws[0][:, 1:] * draws[0][:, :-1]).mean(1)
    assert float(lag.abs().max()) < 1.3 * bound


def test_batch_composition_does_not_matter():
    """Row i depends only on key i and the counter: sub-batches, permutations, other keys."""
    seeds = torch.tensor([11, 3, 99, 42, 5, 8, 1000, 7])
    full = SampleStreams.from_seeds(seeds)
    x = torch.stack([full.randn((3, 2), torch.float32) for _ in range(3)])  # [3 draws, 8, 3, 2]
    perm = torch.tensor([7, 2, 0])
    sub = SampleStreams.from_seeds(seeds[perm])
    y = torch.stack([sub.randn((3, 2), torch.float32) for _ in range(3)])
    assert torch.equal(y, x[:, perm])
    # Mixed with unrelated keys in a bigger batch.
    big = torch.cat([seeds[perm], torch.arange(500, 600)])
    z = torch.stack([SampleStreams.from_seeds(big).randn((3, 2)) for _ in range(1)])
    assert torch.equal(z[0, :3], x[0, perm])
    # Indexing a stream set keeps the counter.
    s = SampleStreams.from_seeds(seeds)
    s.randn((2,))
    assert torch.equal(s[perm].randn((3, 2)), x[1, perm])
    assert s[3].randn((3, 2)).shape == (1, 3, 2)


def test_per_sample_counters():
    keys = derive_keys(torch.arange(4))
    per = draw_normal(keys, torch.tensor([0, 1, 2, 0]), (5,), torch.float64)
    for i, c in enumerate([0, 1, 2, 0]):
        assert torch.equal(per[i], draw_normal(keys[i : i + 1], c, (5,), torch.float64)[0])


def test_uniform_never_reaches_one():
    """All-ones bits (the largest 53-bit value) stay below 1, so ndtri stays finite."""
    bits = torch.tensor([-1, 0, 2**62], dtype=torch.int64)
    u = _uniform53(bits, torch.float64)
    assert bool(((u > 0) & (u < 1)).all())
    assert bool(torch.isfinite(torch.special.ndtri(u)).all())


def test_uniform_int():
    keys = derive_keys(torch.arange(30000))
    v = draw_uniform_int(keys, 0, 7)
    assert int(v.min()) == 0 and int(v.max()) == 6
    freq = torch.bincount(v, minlength=7).double() / v.numel()
    assert float((freq - 1 / 7).abs().max()) < 0.01
    assert torch.equal(draw_uniform_int(keys[:5], 0, 7), v[:5])
    assert not torch.equal(draw_uniform_int(keys, 1, 7), v)


def test_draw_uniform_is_the_u_behind_draw_uniform_int():
    keys = derive_keys(torch.arange(20000), salt=5)
    u = draw_uniform(keys, 3)
    assert u.dtype == torch.float64 and 0 < float(u.min()) and float(u.max()) < 1
    assert abs(float(u.mean()) - 0.5) < 0.01
    for high in (7, 4096):
        want = torch.clamp((u * high).long(), max=high - 1)
        assert torch.equal(want, draw_uniform_int(keys, 3, high))
    # The tensor (any device) path: the same bits.
    z = torch.as_tensor(3, dtype=torch.int64)
    assert torch.equal(u, _uniform53(_mix(_mix(keys ^ (z * _STREAM)) + 12345), torch.float64))


def test_host_hash_equals_tensor_hash_bit_for_bit():
    """On CPU, derive_keys and draw_uniform_int hash on uint64 numpy arrays; the int64 tensor
    code (what CUDA runs) is the reference: equal bits, shapes and dtypes, inputs untouched."""
    g = torch.Generator().manual_seed(0)
    extreme = torch.tensor([0, 1, -1, 2**62, 2**63 - 1, -(2**63)])
    seeds = torch.cat([extreme, torch.randint(-(2**63), 2**63 - 1, (2000,), generator=g)])
    salts = torch.randint(-(2**63), 2**63 - 1, (2006,), generator=g)
    cases = [
        (torch.tensor(17), torch.tensor(3)),  # 0-d and 0-d: a 0-d key
        (seeds, torch.tensor(0)),
        (seeds, torch.tensor(-5)),
        (seeds, salts),  # row-wise salts
        (seeds[None, :50], torch.arange(7)[:, None]),  # broadcast [7, 50] (the env's look-ahead)
        (seeds[::3], salts[::3]),  # strided views
    ]
    for s, e in cases:
        before = (s.clone(), e.clone())
        host, ref = _derive_keys_host(s, e), _derive_keys_tensor(s, e)
        assert host.dtype == ref.dtype == torch.int64 and host.shape == ref.shape
        assert torch.equal(host, ref)
        assert torch.equal(s, before[0]) and torch.equal(e, before[1])
    assert torch.equal(
        derive_keys(np.arange(5), salt=3), _derive_keys_tensor(torch.arange(5), torch.tensor(3))
    )
    keys = _derive_keys_tensor(seeds, torch.tensor(0))
    for high in (1, 2, 7, 4096, 10**9 + 7, 2**31 - 1, 2**53, 2**53 + 1, 2**62, 2**63 - 1):
        for counter in (torch.tensor(0), torch.tensor(-3), salts):
            host = _draw_uniform_int_host(keys, counter, high)
            ref = _draw_uniform_int_tensor(keys, counter, high)
            assert host.dtype == ref.dtype == torch.int64 and host.shape == ref.shape
            assert torch.equal(host, ref), high
        assert torch.equal(
            _draw_uniform_int_host(keys[7], torch.tensor(1), high),
            _draw_uniform_int_tensor(keys[7], torch.tensor(1), high),
        )
    # The uniform-to-int map alone, at the edges: all-ones bits (the capped largest uniform),
    # the largest uncapped top, zero, and halfway values.
    raw = [2**64 - 1, (2**53 - 2) << 11, ((2**53 - 1) << 11) - 1, 0, 2**63, 2**62 + 5, 3 << 10]
    bits = torch.tensor([v - 2**64 if v >= 2**63 else v for v in raw])  # as int64
    for high in (1, 3, 4096, 2**53 - 1, 2**53, 2**62):
        ref = torch.clamp((_uniform53(bits, torch.float64) * high).long(), max=high - 1)
        assert torch.equal(
            torch.from_numpy(_uniform_int_host(bits.numpy().view(np.uint64), high)), ref
        )


def test_randn_dispatch_and_errors():
    g = torch.Generator().manual_seed(0)
    a = randn((3, 2), g, torch.float64, "cpu")
    b = torch.randn(3, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(a, b)
    s = SampleStreams.from_seeds([1, 2, 3])
    expected = SampleStreams.from_seeds([1, 2, 3]).randn((2,), torch.float64)
    assert torch.equal(randn((3, 2), s, torch.float64, "cpu"), expected)
    with pytest.raises(ValueError, match="3 streams"):
        randn((4, 2), SampleStreams.from_seeds([1, 2, 3]), torch.float64, "cpu")
    with pytest.raises(TypeError, match="generator"):
        randn((4, 2), 123, torch.float64, "cpu")
    with pytest.raises(TypeError, match="int64"):
        SampleStreams(torch.tensor([1.0, 2.0]))
    with pytest.raises(TypeError, match="1-D"):
        SampleStreams(torch.ones(2, 2, dtype=torch.int64))


# ---------------------------------------------------------------------------------------------
# The seeding contract (moved here from baselines.evaluate; the pinned numbers are the old ones)


def test_make_noise_is_draw_zero_of_per_sample_streams(ring8):
    x_T, streams = make_noise(ring8, 3, seed=7)
    assert x_T.dtype == torch.float64 and streams.counter == 0
    assert x_T.tolist() == [
        [-150.05748846817195, 64.531118440208],
        [4.752778863977526, 159.5443682158263],
        [83.32923131060043, 74.97462534822473],
    ]
    keys = derive_keys(torch.arange(3), salt=7)
    assert torch.equal(x_T, ring8.prior_std * draw_normal(keys, 0, (2,), torch.float64))
    # The streams come back with their counter reset: the caller's first draw is draw 0.
    assert torch.equal(
        streams.randn((2,), torch.float64), draw_normal(keys, 0, (2,), torch.float64)
    )
    assert torch.equal(
        streams.randn((2,), torch.float64), draw_normal(keys, 1, (2,), torch.float64)
    )
    # Per sample: a longer batch starts with the same rows; another seed differs.
    assert torch.equal(make_noise(ring8, 16, 7)[0][:3], x_T)
    assert not torch.equal(make_noise(ring8, 3, 8)[0], x_T)


def test_make_labels_modes(ring8):
    assert make_labels(ring8, 10, 0).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 0, 1]
    assert make_labels(ring8, 6, 1, "data").tolist() == [5, 2, 4, 1, 6, 4]
    assert make_labels(ring8, 4, 0, 3).tolist() == [3, 3, 3, 3]
    assert make_labels(ring8, 3, 0, torch.tensor([1, 0, 7])).tolist() == [1, 0, 7]
    assert make_labels(ring8, 4, 0, None) is None
    with pytest.raises(ValueError, match="out of range"):
        make_labels(ring8, 4, 0, 8)
    with pytest.raises(ValueError, match="balanced"):
        make_labels(ring8, 4, 0, "uniform")
    with pytest.raises(ValueError, match="ints in"):
        make_labels(ring8, 3, 0, torch.tensor([0, 1]))


def test_make_labels_unconditional_preset_gets_none(gauss1d):
    assert make_labels(gauss1d, 4, 0) is None


def test_baselines_evaluate_reexports_the_core_seeding_contract():
    evaluate = pytest.importorskip("baselines.evaluate")
    assert evaluate.make_noise is make_noise and evaluate.make_labels is make_labels
