"""Occupancy-matching IRL trainer (agents/irl/) and the dual-head policy (agents/policies.py)."""

import numpy as np
import pytest
import torch

from agents.irl import IRLTrainer, PolicyStrategy, decode_step_class
from agents.policies import select_actions
from agents.train import load_config
from baselines.evaluate import HIGHER_IS_BETTER, METRICS, evaluate
from diffusion_gym import presets, steps
from diffusion_gym.metrics import digits_metrics
from diffusion_gym.noise import make_labels, make_noise


def tiny(overrides=()):
    data = {
        "agent": "irl",
        "seed": 0,
        "rounds": 2,
        "progress": False,
        "env": {"num_envs": 64, "num_steps": 4},
        "algo": {"net_arch": [32, 32], "learning_rate": 0.003, "batch_size": 128},
        "discriminator": {"hidden": [32, 32], "batch_size": 128},
        "eval": {"num_samples": 256, "seeds": [0], "metrics": ["energy"]},
    }
    return load_config(data, ["num_threads=1", *overrides])[1]


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_relabelled_rewards_are_the_discriminator_rewards_of_next_states():
    tr = IRLTrainer(tiny(["discriminator.divergence=reverse_kl"]))
    tr.train_round()
    # the buffer's rewards = reward of the recorded next states under the discriminator
    # as it was during relabelling: recompute with a fresh round and compare before update.
    states = tr.last_rollout["states"]
    k, labels = decode_step_class(tr.env, states)
    n, b = tr.env.num_steps, tr.env.num_envs
    assert torch.equal(k.reshape(-1, b), (torch.arange(len(k) // b) % n + 1)[:, None].expand(-1, b))
    assert labels is not None and labels.shape == k.shape
    # reward of reverse KL is logit - 1 (the env's own reward, 'none', is 0 and only logged)
    torch.testing.assert_close(tr.reward(states[:8]), tr.logit(states[:8]).detach() - 1)
    assert tr.last_rollout["env_reward"] == 0.0


def test_policy_strategy_matches_the_env_rollout():
    tr = IRLTrainer(tiny())
    env = tr.env
    obs, _ = env.reset(seed=3)
    x_t, labels, streams = env.x.clone(), env.class_labels.clone(), env.streams
    strat = PolicyStrategy("p", env, tr.model.policy, None)
    policy_x0 = strat.sample(env.preset, x_t.clone(), labels, streams)
    for _ in range(env.num_steps):
        a = select_actions(tr.model.policy, torch.as_tensor(obs), deterministic=True)
        obs, _, term, _, info = env.step(a.numpy())
    x0 = torch.as_tensor(np.stack(info["final_info"]["x0"]))
    torch.testing.assert_close(policy_x0, x0.to(policy_x0.dtype))


def _reference_policy_sample(env, policy, x_t, labels, streams, temperature, seed):
    """The policy's sampler written out with diffusion_gym.steps.step (independent of
    env.rollout): observation, action, churn noise = draw k+1 of each stream, step."""
    x, gen = x_t.to(env.dtype), torch.Generator().manual_seed(seed)
    w_t = torch.tensor(env.guidance_weights.tolist(), dtype=x.dtype)
    g_t = torch.tensor(env.gammas.tolist(), dtype=x.dtype)
    sig = [float(s) for s in env.sigmas]
    for k in range(env.num_steps):
        a = select_actions(
            policy,
            env.encode_obs(x, k, labels),
            temperature=temperature or 1.0,
            deterministic=temperature is None,
            generator=gen,
        )
        w, gamma = w_t[a // len(env.gammas)], g_t[a % len(env.gammas)]
        noise = steps.churn_noise(streams, k, x) if bool((gamma > 0).any()) else None
        x, _ = steps.step(
            env.denoiser,
            x,
            sig[k],
            sig[k + 1],
            class_labels=labels,
            guidance=w,
            gamma=gamma if noise is not None else 0.0,
            solver=env.solver,
            noise=noise,
            s_noise=env.s_noise,
        )
    return x


@pytest.mark.parametrize("temperature", [None, 1.0])
def test_policy_strategy_is_bit_identical_to_the_written_out_sampler(temperature):
    # churn in the table and an untrained (spread-out) policy: every (w, γ) gets used
    tr = IRLTrainer(tiny(["env.gammas=[0.0,0.4]"]))
    preset = tr.env.preset
    x_t, streams = make_noise(preset, 300, 5)
    labels = make_labels(preset, 300, 5, "balanced")
    strat = PolicyStrategy("p", tr.env, tr.model.policy, temperature, seed=3)
    x0 = strat.sample(preset, x_t.clone(), labels, streams)
    ref = _reference_policy_sample(tr.env, tr.model.policy, x_t, labels, streams, temperature, 3)
    assert torch.equal(x0, ref)
    assert len(strat.last_w) == tr.env.num_steps and max(strat.last_gamma) > 0


@pytest.mark.slow
def test_short_training_improves_over_initial_policy():
    cfg = tiny(["rounds=40"])
    tr = IRLTrainer(cfg)
    before = PolicyStrategy("before", tr.env, tr.model.policy, 1.0, seed=0)
    res0 = evaluate(
        [before], tr.env.preset, num_samples=512, seeds=[0], metrics=["energy"], progress=False
    )
    for _ in range(cfg.rounds):
        tr.train_round()
    after = PolicyStrategy("after", tr.env, tr.model.policy, 1.0, seed=0)
    res1 = evaluate(
        [after], tr.env.preset, num_samples=512, seeds=[0], metrics=["energy"], progress=False
    )
    e0, e1 = res0["before"]["energy"]["mean"], res1["after"]["energy"]["mean"]
    assert e1 < 0.5 * e0, (e0, e1)


@pytest.mark.parametrize("source", ["separate", "policy"])
def test_resume_gives_the_same_state_as_an_uninterrupted_run(tmp_path, source):
    over = [] if source == "separate" else ["algo.policy=dual_head", "discriminator.source=policy"]
    full = IRLTrainer(tiny(over))
    full.train_round()
    full.train_round()
    first = IRLTrainer(tiny(over))
    first.train_round()
    saved = first.save(tmp_path)
    assert saved == tmp_path / "round_1" and (saved / "policy.zip").is_file()
    resumed = IRLTrainer(tiny(over))
    resumed.load(saved)
    assert resumed.round == 1
    resumed.train_round()
    for a, b in zip(
        full.model.policy.state_dict().values(),
        resumed.model.policy.state_dict().values(),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    if source == "separate":
        for a, b in zip(
            full.disc.state_dict().values(), resumed.disc.state_dict().values(), strict=True
        ):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    sa, sb = full.disc_opt.state_dict()["state"], resumed.disc_opt.state_dict()["state"]
    for key in sa:
        torch.testing.assert_close(sa[key]["exp_avg"], sb[key]["exp_avg"], rtol=0, atol=0)


def test_dual_head_density_head_trains_the_trunk():
    tr = IRLTrainer(tiny(["algo.policy=dual_head", "discriminator.source=policy"]))
    trunk0 = [p.clone() for p in tr.model.policy.features_extractor.parameters()]
    tr.train_round()
    assert tr.disc is None
    moved = [
        not torch.equal(a, b)
        for a, b in zip(trunk0, tr.model.policy.features_extractor.parameters(), strict=True)
    ]
    assert all(moved)
    s = tr.last_rollout["states"][:5]
    assert tr.logit(s).shape == (5,)


def test_temperature_limits():
    tr = IRLTrainer(tiny())
    obs = torch.as_tensor(tr.env.reset(seed=0)[0])
    greedy = select_actions(tr.model.policy, obs, deterministic=True)
    cold = select_actions(
        tr.model.policy, obs, temperature=1e-6, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(greedy, cold)
    hot = select_actions(
        tr.model.policy,
        obs.repeat(50, 1),
        temperature=1e3,
        generator=torch.Generator().manual_seed(0),
    )
    n_actions = tr.env.single_action_space.n
    assert len(torch.unique(hot)) == n_actions  # near-uniform: every action appears
    with pytest.raises(ValueError, match="temperature"):
        select_actions(tr.model.policy, obs, temperature=0.0)


def test_bad_config_values():
    with pytest.raises(ValueError, match="algo.name"):
        tiny(["algo.name=sac"])
    with pytest.raises(ValueError, match="dual_head"):
        tiny(["discriminator.source=policy"])


@pytest.mark.parametrize("algo", ["a2c", "maskable_ppo"])
def test_other_on_policy_algorithms_run_a_round(algo):
    tr = IRLTrainer(tiny([f"algo.name={algo}"]))
    before = [p.clone() for p in tr.model.policy.parameters()]
    stats = tr.train_round()
    assert 0.0 <= stats["accuracy"] <= 1.0 and np.isfinite(stats["irl_reward"])
    after = list(tr.model.policy.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    x0 = tr.strategy().sample(
        tr.env.preset, torch.zeros(4, 2, dtype=torch.float64) + 5.0, torch.arange(4), None
    )
    assert x0.shape == (4, 2) and bool(torch.isfinite(x0).all())


def test_state_input_discriminator_sees_the_true_states_in_features_mode():
    # features observation for the policy, state encoding of x_{k+1} for the discriminator:
    # replay the round's first episode with its recorded actions and compare.
    tr = IRLTrainer(tiny(["env.obs_mode=features", "discriminator.input=state"]))
    env, denv = tr.env, tr.disc_env
    assert denv is not None and denv.obs_mode == "state"
    assert tr.obs_dim == env.denoiser.dim + 2 + env.num_classes
    tr.train_round()
    states, actions = tr.last_rollout["states"], tr.last_rollout["actions"]
    b, n = env.num_envs, env.num_steps
    k, labels = decode_step_class(denv, states)
    assert torch.equal(k.reshape(-1, b), (torch.arange(len(k) // b) % n + 1)[:, None].expand(-1, b))
    env.reset(seed=tr.env_seeds(0))  # round 0's episodes again
    for t in range(n):
        tr.venv.step(actions[t, :, 0].astype(np.int64))
        x = env.x if t < n - 1 else torch.as_tensor(np.stack(tr.venv.last_info["final_info"]["x0"]))
        expect = denv.encode_obs(x, t + 1, labels[t * b : (t + 1) * b])
        torch.testing.assert_close(states[t * b : (t + 1) * b], expect, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="discriminator.input"):
        tiny(["discriminator.input=pixels"])


def test_classifier_input_discriminator_sees_classifier_features_of_x0():
    """``discriminator.input=classifier`` (digits): the discriminator's states are the env's
    classifier encoding, and a final x_0 carries the standardised classifier features of x_0
    itself (D(x; 0) = x), which expert x_0 share; refused on a preset without a classifier."""
    over = ["env.preset=digits", "env.num_envs=8", "env.num_steps=2", "env.obs_mode=features",
            "discriminator.input=classifier", "discriminator.batch_size=16",
            "algo.batch_size=16", "rounds=1"]  # fmt: skip
    tr = IRLTrainer(tiny(over))
    denv = tr.disc_env
    assert denv is not None and denv.obs_mode == "classifier"
    assert tr.obs_dim == denv.single_observation_space.shape[0]
    tr.train_round()
    states = tr.last_rollout["states"]
    assert bool(torch.isfinite(states).all())
    labels = torch.arange(8) % 10
    x0 = denv.preset.data.sample(8, labels, generator=torch.Generator().manual_seed(0)).double()
    obs = denv.encode_obs(x0, 2, labels)
    feats = denv._features(x0)
    torch.testing.assert_close(obs[:, -feats.shape[1] :], feats.to(obs), rtol=1e-4, atol=1e-4)
    assert float(tr.is_final(obs).min()) == 1.0
    assert float(obs[:, -feats.shape[1] - 1].abs().max()) == 0.0  # no residual at σ = 0
    with pytest.raises(ValueError, match="classifier"):
        IRLTrainer(tiny(["discriminator.input=classifier"]))


def test_harness_digits_metrics_match_digits_metrics_and_skip_mixtures():
    data = presets.make("digits").data
    labels = torch.arange(200) % 10
    x0 = data.sample(200, labels, torch.Generator().manual_seed(0))
    ctx = {"x0": x0, "labels": labels}
    ref = digits_metrics(x0, labels)
    for name, key in (
        ("fd_digits", "fd"),
        ("digits_precision", "precision"),
        ("digits_recall", "recall"),
        ("digits_class_acc", "class_accuracy"),
    ):
        assert METRICS[name](ctx) == pytest.approx(ref[key])
    assert ref["class_accuracy"] > 0.9  # real digits: the shipped classifier is 99% accurate
    assert {"digits_precision", "digits_recall", "digits_class_acc"} <= HIGHER_IS_BETTER
    assert METRICS["fd_digits"]({"x0": torch.zeros(4, 2), "labels": None}) is None
