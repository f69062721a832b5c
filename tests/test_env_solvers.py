"""Both envs with every solver: a rollout with fixed actions equals steps.sample with the same
solver, schedule, weights and seed; NFE; the multistep history per episode; obs_history."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffusion_gym import presets, schedules, steps
from diffusion_gym.denoisers import GaussianMixture
from diffusion_gym.envs import ClockVectorEnv, GuidanceVectorEnv
from diffusion_gym.noise import SampleStreams, derive_keys, draw_normal

MULTISTEP = [s for s in steps.SOLVERS if steps.is_multistep(s)]


class CountingDenoiser(GaussianMixture):
    """The ring8-like mixture, counting denoiser evaluations (batched calls)."""

    calls = 0

    def denoise(self, x, sigma, class_labels):
        type(self).calls += 1
        return super().denoise(x, sigma, class_labels)


def _clock(solver, budget=5, num_envs=6, **kw) -> ClockVectorEnv:
    return ClockVectorEnv(
        denoiser="gmm-ring8", budget=budget, solver=solver, num_envs=num_envs, bank_size=32,
        reference_steps=32, **kw,
    )  # fmt: skip


def _policy(seed):
    rng = np.random.default_rng(seed)

    def act(obs, k):
        return rng.uniform(-1, 1, size=(obs.shape[0], 1))

    return act


@pytest.mark.parametrize("solver", steps.SOLVERS)
def test_clock_rollout_equals_sample_per_env(solver):
    """Random clock speeds: every env's x_K equals steps.sample on its realised schedule
    (per-sample σ in the env, one schedule per call here) to <= 1e-12 in float64; all-zero
    actions reproduce karras(K) with the batch sampler bit for bit."""
    env = _clock(solver)
    ro = env.rollout(_policy(3), seed=11)
    assert torch.all(ro.schedule[:, -1] == 0)
    for i in range(env.num_envs):
        lab = None if ro.class_labels is None else ro.class_labels[i : i + 1]
        x = steps.sample(env.denoiser, ro.x_T[i : i + 1], ro.schedule[i], class_labels=lab,
                         solver=solver)  # fmt: skip
        assert float((x - ro.x0[i : i + 1]).abs().max()) <= 1e-12
    zero = env.rollout(lambda obs, k: np.zeros((obs.shape[0], 1)), seed=11)
    karras = schedules.karras(5, env.denoiser.sigma_min, env.denoiser.sigma_max)
    want = steps.sample(env.denoiser, zero.x_T, karras, class_labels=zero.class_labels,
                        solver=solver)  # fmt: skip
    assert torch.equal(zero.x0, want)
    env.close()


@pytest.mark.parametrize("solver", MULTISTEP)
def test_clock_history_restarts_on_autoreset_and_nfe(solver):
    """Two episodes through step() with autoreset: the second equals a fresh rollout of its
    own seed/episode (the history does not leak across episodes); NFE per episode = K."""
    p = presets.make("gmm-ring8")
    gm = p.denoiser
    den = CountingDenoiser(gm.means, gm.covariances, gm.weights, gm.component_classes)
    k = 4
    env = ClockVectorEnv(denoiser=den, data=p.data, budget=k, solver=solver, num_envs=3,
                         bank_size=16, reference_steps=16, prior_std=p.prior_std)  # fmt: skip
    env.reset(seed=5)
    acts = np.random.default_rng(0).uniform(-1, 1, size=(2 * k, 3, 1)).astype(np.float32)
    CountingDenoiser.calls = 0
    finals = []
    for t in range(2 * k):
        _, _, term, _, info = env.step(acts[t])
        if term.all():
            finals.append(info["final_info"])
    assert CountingDenoiser.calls == 2 * steps.nfe_of(k, solver) == 2 * k
    assert len(finals) == 2
    # Episode 2 replayed: the same schedule through steps.sample from the bank row's x_T.
    sched = torch.as_tensor(finals[1]["schedule"])
    assert env.solver_state is not None and env.solver_state.k == 0  # fresh after autoreset
    x0 = torch.as_tensor(finals[1]["x0"])
    # the x_T of episode 2 is a bank row; find it by solving from every row and matching
    for i in range(3):
        cand = steps.sample(den, env.bank.x_T, sched[i], class_labels=env.bank.labels,
                            solver=solver)  # fmt: skip
        assert float((cand - x0[i]).abs().max(1).values.min()) <= 1e-12
    env.close()


def test_clock_solver_arguments_and_obs_history():
    with pytest.raises(ValueError, match="solver must be one of"):
        _clock("dpm-fast")
    with pytest.raises(TypeError, match="obs_history must be a bool"):
        _clock("dpmpp-2m", obs_history=1)
    plain = _clock("unipc-2", num_envs=2)
    hist = _clock("unipc-2", num_envs=2, obs_history=True)
    n_x, slots = 2, steps.get_solver("unipc-2").history_slots
    assert slots == 3 and hist.obs_dim == plain.obs_dim + slots * (2 + n_x)
    assert _clock("heun", obs_history=True).obs_dim == _clock("heun").obs_dim  # H = 0
    ro = hist.rollout(_policy(1), seed=2)
    ro_plain = plain.rollout(_policy(1), seed=2)
    torch.testing.assert_close(ro.x0, ro_plain.x0, rtol=0, atol=0)  # obs does not change x
    d = plain.obs_dim - 8  # the one-hot (8 classes) stays last
    obs = ro.observations  # [K+1, B, obs_dim]
    h = obs[:, :, d : d + slots * (2 + n_x)].reshape(6, 2, slots, 2 + n_x)
    torch.testing.assert_close(obs[..., :d], ro_plain.observations[..., :d])
    torch.testing.assert_close(obs[..., -8:], ro_plain.observations[..., -8:])
    assert (h[0] == 0).all()  # empty at reset
    # after step k (k >= 1) slots 0..min(k, 2)-1 hold D's, the x_last slot is present
    assert (h[1, :, 0, 0] == 1).all() and (h[1, :, 1, 0] == 0).all() and (h[1, :, 2, 0] == 1).all()
    assert (h[3, :, :, 0] == 1).all()
    # slot 0's log σ is σ_{k−1} of the realised schedule
    torch.testing.assert_close(h[3, :, 0, 1].double(), ro.schedule[:, 2].log(), rtol=1e-6, atol=0)
    # step() by hand: slot 0 holds the previous step's D / σ_data, slot 2 x_last scaled
    hist.reset(seed=2)
    hist.step(np.zeros((2, 1), np.float32))
    obs, *_ = hist.step(np.full((2, 1), 0.5, np.float32))
    st, sd = hist.solver_state, hist.denoiser.sigma_data
    cols = torch.as_tensor(obs[:, d : d + slots * (2 + n_x)]).reshape(2, slots, 2 + n_x)
    torch.testing.assert_close(cols[:, 0, 2:], (st.model[0] / sd).float())
    torch.testing.assert_close(cols[:, 1, 2:], (st.model[1] / sd).float())
    sig = st.sigmas[0]
    torch.testing.assert_close(cols[:, 2, 2:], (st.x_last / (sig**2 + sd**2).sqrt()).float())
    for env in (plain, hist):
        env.close()


@pytest.mark.parametrize("solver", ["dpmpp-3m", "ipndm"])
def test_clock_obs_history_features_mode(solver):
    """``features`` mode: per slot [present, log σ, RMS of the entry]; iPNDM's entries are
    the derivatives d = (x − D)/σ."""
    env = _clock(solver, num_envs=3, obs_mode="features", obs_history=True)
    slots = steps.get_solver(solver).history_slots
    assert env.obs_dim == 3 + 3 + slots * 3 + 8
    env.reset(seed=1)
    for _ in range(3):
        obs, *_ = env.step(np.full((3, 1), 0.3, np.float32))
    cols = torch.as_tensor(obs[:, 6 : 6 + 3 * slots]).reshape(3, slots, 3)
    st = env.solver_state
    assert (cols[:, :3, 0] == 1).all() and (cols[:, 3:, 0] == 0).all()  # 3 steps taken
    scale = 1.0 if solver == "ipndm" else 1.0 / env.denoiser.sigma_data
    rms = (st.model[0] * scale).pow(2).mean(1).sqrt()
    torch.testing.assert_close(cols[:, 0, 2], rms.float())
    env.close()


def test_clock_bank_shared_across_solvers():
    """One bank (built once) serves envs with different solvers; episodes equal those of an
    env with its own (identical) bank; a bank with other entries is refused."""
    heun = _clock("heun", num_envs=3)
    heun.reset(seed=0)
    built = heun.bank_build_seconds
    shared = ClockVectorEnv(denoiser=heun.preset, budget=5, solver="unipc-2", num_envs=3,
                            bank_size=32, reference_steps=32, bank=heun.bank)  # fmt: skip
    assert shared.bank is heun.bank
    own = _clock("unipc-2", num_envs=3)
    a = shared.rollout(_policy(4), seed=9)
    b = own.rollout(_policy(4), seed=9)
    assert heun.bank_build_seconds == built  # not rebuilt
    for f in ("x0", "x_ref", "schedule", "rewards", "observations"):
        assert torch.equal(getattr(a, f), getattr(b, f)), f
    with pytest.raises(ValueError, match="differs in size"):
        ClockVectorEnv(denoiser=heun.preset, budget=5, solver="ipndm", num_envs=3,
                       bank_size=16, reference_steps=32, bank=heun.bank)  # fmt: skip
    with pytest.raises(ValueError, match="denoiser"):
        ClockVectorEnv(denoiser="gmm-ring8", budget=5, solver="ipndm", num_envs=3,
                       bank_size=32, reference_steps=32, bank=heun.bank)  # fmt: skip
    with pytest.raises(TypeError, match="bank must be a ReferenceBank"):
        _clock("ipndm", bank=heun.bank.x_ref)
    for env in (heun, shared, own):
        env.close()


# ---------------------------------------------------------------------------------------------
# Guidance-v0


@pytest.mark.parametrize("solver", steps.SOLVERS)
def test_guidance_rollout_equals_sample(solver):
    """Fixed per-step, per-env guidance weights (γ = 0 for multistep solvers): the env's x0
    equals steps.sample with the same schedule, weights and stream keys (<= 1e-12)."""
    b, seed = 5, 3
    env = GuidanceVectorEnv(num_envs=b, denoiser="gmm-ring8-imperfect", num_steps=5,
                            solver=solver)  # fmt: skip
    nw, ng = len(env.guidance_weights), len(env.gammas)
    rng = np.random.default_rng(0)
    wi = rng.integers(0, nw, size=(5, b))
    gi = rng.integers(0, ng, size=(5, b))
    obs, _ = env.reset(seed=seed)
    labels = env.class_labels.clone()
    for t in range(5):
        obs, _, term, _, info = env.step(wi[t] * ng + gi[t])
    assert term.all()
    x0_env = torch.as_tensor(info["final_info"]["x0"])
    p = presets.make("gmm-ring8-imperfect")
    keys = derive_keys(torch.arange(b) + seed, salt=0)
    x_t = p.prior_std * draw_normal(keys, 0, p.denoiser.shape, torch.float64)
    ref = steps.sample(
        p.denoiser, x_t, schedules.karras(5, p.sigma_min, p.sigma_max), class_labels=labels,
        guidance=torch.as_tensor(env.guidance_weights[wi]),
        gamma=torch.as_tensor(env.gammas[gi]), solver=solver, generator=SampleStreams(keys),
    )  # fmt: skip
    assert float((x0_env - ref).abs().max()) <= 1e-12
    # rollout() runs the same step code with its own history
    ro = env.rollout(lambda o, k: wi[k] * ng + gi[k], seed=seed)
    assert float((ro.x0 - ref).abs().max()) <= 1e-12
    env.close()


def test_guidance_multistep_refuses_churn_and_defaults_to_no_churn():
    for solver in ("dpmpp-3m", "unipc-2", "unipc-3", "ipndm"):
        env = GuidanceVectorEnv(num_envs=2, denoiser="gmm-ring8-imperfect", solver=solver)
        assert tuple(env.gammas) == (0.0,)
        env.close()
    # dpmpp-2m: churn is its SDE variant, the default table stays
    env = GuidanceVectorEnv(num_envs=2, denoiser="gmm-ring8-imperfect", solver="dpmpp-2m")
    assert len(env.gammas) == 3
    env.close()
    with pytest.raises(ValueError, match="churn gamma > 0, which needs a single-step solver"):
        GuidanceVectorEnv(num_envs=2, denoiser="gmm-ring8-imperfect", solver="unipc-2",
                          gammas=(0.0, 0.1))  # fmt: skip
    env = GuidanceVectorEnv(num_envs=2, denoiser="gmm-ring8-imperfect", solver="heun")
    assert len(env.gammas) == 3  # single-step: the default table {0, 0.1, 0.4}
    env.close()


def test_guidance_multistep_features_obs():
    env = GuidanceVectorEnv(num_envs=3, denoiser="gmm-ring8-imperfect", solver="unipc-3",
                            obs_mode="features", num_steps=4)  # fmt: skip
    env.reset(seed=0)
    for _ in range(4):
        obs, *_ = env.step(np.full(3, 3))
    assert np.isfinite(obs).all()
    env.close()
