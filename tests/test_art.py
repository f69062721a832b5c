"""ART-RL agent: actor-critic math, distillation/export, interpolation, training, resume."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.art import (
    ActorCriticConfig,
    Config,
    ContinuousActorCritic,
    EvalConfig,
    SelfCriticalReward,
    clock_schedule,
    distill,
    find_wrapper,
    gaussian_1d_w2,
    local_error_coefficient,
    make_env,
    make_model,
    run,
    transfer_schedule,
)
from diffusion_gym import presets, schedules, steps

ART_DIR = Path(__file__).resolve().parents[1] / "agents" / "art"


def test_package_modules_are_flat_and_short():
    # No class and no import inside a function; every module under ~500 lines.
    files = sorted(ART_DIR.glob("*.py"))
    assert {f.stem for f in files} >= {"config", "actor_critic", "wrappers", "sb3", "trainer"}
    for f in files:
        text = f.read_text()
        assert len(text.splitlines()) <= 500, f
        for fn in ast.walk(ast.parse(text)):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    bad = isinstance(node, (ast.ClassDef, ast.Import, ast.ImportFrom))
                    assert not bad, f"{f.name}:{node.lineno} inside {fn.name}"


def _gauss1d_gain(sigmas) -> float:
    """Independent closed form: Euler on N(0,1) data, x' = x (1 + (σ' − σ) σ / (1 + σ²))."""
    a = 1.0
    for s, sn in zip(sigmas[:-1], sigmas[1:], strict=True):
        a *= 1 + (sn - s) * s / (1 + s**2)
    return a


def test_w2_closed_form_matches_product_formula_and_paper():
    p = presets.make("art-gauss1d")
    for k, paper in ((2, 0.468), (5, 0.215), (10, 0.114)):
        sig = schedules.linear(k, 3.0)
        w2 = gaussian_1d_w2(p, sig, "euler")
        assert w2 == pytest.approx(abs(_gauss1d_gain(sig.tolist()) * math.sqrt(10) - 1), abs=1e-12)
        assert abs(w2 - paper) < 0.005


def test_local_error_coefficient_closed_form():
    # On the exact ODE path x(σ) = c sqrt(1 + σ²) of N(0,1) data: x'' = c / (1 + σ²)^{3/2}.
    p = presets.make("art-gauss1d")
    sigma = torch.tensor([0.3, 1.0, 2.5], dtype=torch.float64)
    c = torch.tensor([1.0, -0.7, 2.0], dtype=torch.float64)
    x = (c * (1 + sigma**2).sqrt())[:, None]
    q, f = local_error_coefficient(p.denoiser, x, sigma, rel_step=1e-5)
    torch.testing.assert_close(q, 0.5 * c.abs() / (1 + sigma**2) ** 1.5, rtol=1e-3, atol=0)
    torch.testing.assert_close(f[:, 0], c * sigma / (1 + sigma**2).sqrt())


def test_interpolation_keeps_endpoints_and_order():
    learned = torch.tensor([80.0, 4.3, 0.35, 0.0], dtype=torch.float64)
    for k in range(1, 11):
        s = transfer_schedule(learned, k)
        assert s.shape == (k + 1,) and float(s[0]) == 80.0 and float(s[-1]) == 0.0
        assert bool((s[1:] < s[:-1]).all())
        if k >= 2:
            assert float(s[-2]) == pytest.approx(0.35)
    # another denoiser's σ range, from the range the schedule was learned on
    moved = transfer_schedule(learned, None, (0.01, 10.0), (0.35, 80.0))
    assert float(moved[0]) == pytest.approx(10.0) and float(moved[-2]) == pytest.approx(0.01)
    assert bool((moved[1:] < moved[:-1]).all())
    with pytest.raises(ValueError, match="sigma_range"):
        transfer_schedule(learned, None, (1.0, 0.5), (0.002, 80.0))
    with pytest.raises(ValueError, match="needs source_range"):
        transfer_schedule(learned, None, (0.01, 157.0))  # a bare list: range unknown


def test_transfer_defaults_to_the_learned_denoisers_range(tmp_path):
    """Issue #21 item 4: [80, 3.21, 0.32] learned on σ ∈ [0.002, 80] moved to [0.01, 157]."""
    learned = [80.0, 3.21, 0.32, 0.0]
    expected_mid = math.exp(
        math.log(0.01) + (math.log(3.21) - math.log(0.002)) / math.log(80 / 0.002)
        * math.log(157 / 0.01)
    )  # fmt: skip
    assert expected_mid == pytest.approx(8.37, abs=0.01)  # the issue: "≈ 8.38"
    path = tmp_path / "schedule.json"
    schedules.save_schedule(path, learned, "heun", 3, None, sigma_min=0.002, sigma_max=80.0)
    moved = transfer_schedule(schedules.load_schedule(path), None, (0.01, 157.0))
    assert float(moved[0]) == pytest.approx(157.0)
    assert float(moved[1]) == pytest.approx(expected_mid, rel=1e-6)
    assert float(moved[2]) > 0.01  # 0.32 is above the source σ_min, so above the target's
    # An old record without the range falls back to its preset's (gmm-ring8: [0.002, 80]).
    schedules.save_schedule(path, learned, "heun", 3, "gmm-ring8")
    assert "sigma_min" not in schedules.load_schedule(path)
    old = transfer_schedule(schedules.load_schedule(path), None, (0.01, 157.0))
    assert torch.allclose(old, moved)
    with pytest.raises(ValueError, match="sigma_min and sigma_max or neither"):
        schedules.save_schedule(path, learned, "heun", 3, None, sigma_min=0.002)
    with pytest.raises(ValueError, match="0 < sigma_min < sigma_max"):
        schedules.save_schedule(path, learned, "heun", 3, None, sigma_min=80.0, sigma_max=1.0)


def test_clock_schedule_rescales_to_terminal_time():
    s = clock_schedule(torch.tensor([2.0, 1.0, 1.0]), 3.0)
    torch.testing.assert_close(s, torch.tensor([3.0, 1.5, 0.75, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="speeds"):
        clock_schedule(torch.tensor([1.0, -1.0]), 3.0)


def test_lagrange_multiplier_moves_against_the_violation():
    p = presets.make("art-gauss1d")
    for bias_speed, sign in ((2.0, -1.0), (0.5, 1.0)):  # overshoot ψ(1)=2T: γ down; 0.5T: up
        ac = ContinuousActorCritic(
            p.denoiser, 5, p.sigma_max, p.prior_std, ActorCriticConfig(batch_size=32)
        )
        with torch.no_grad():
            ac.actor[-1].weight.zero_()
            ac.actor[-1].bias.fill_(math.log(math.expm1(bias_speed)))  # softplus⁻¹
        ac._init_scales()
        g0 = float(ac.gamma)
        logs = ac.update()
        assert np.sign(logs["train/constraint_violation"]) == -sign
        assert np.sign(float(ac.gamma) - g0) == sign


def test_art_actor_critic_improves_surrogate_and_resumes(tmp_path):
    p = presets.make("art-gauss1d")
    cfg = ActorCriticConfig(iterations=6, batch_size=32)

    def make():
        return ContinuousActorCritic(p.denoiser, 5, p.sigma_max, p.prior_std, cfg)

    a = make()
    for _ in range(6):
        a.update()
    b = make()
    for _ in range(3):
        b.update()
    torch.save(b.state(), tmp_path / "s.pt")
    c = make()
    c.load_state(torch.load(tmp_path / "s.pt", weights_only=True))  # no pickled code
    for _ in range(3):
        c.update()
    torch.testing.assert_close(c.schedule(), a.schedule(), rtol=0, atol=0)
    assert float(c.gamma) == float(a.gamma)


def _tiny(algo: str = "ppo", **kw) -> Config:
    ev = EvalConfig(num_samples=64, seeds=[0], metrics=["rmse"], rho_grid=[7.0], oracle=False)
    base = dict(preset="art-gauss1d", budget=5, solver="euler", base="linear", num_envs=32,
                total_timesteps=320, bank_size=64, reference_steps=32, distill_samples=8,
                progress=False, algo=algo, eval=ev)  # fmt: skip
    base["algo_kwargs"] = {"n_steps": 5, "batch_size": 80}
    base.update(kw)
    return Config(**base)


def test_distilled_schedule_round_trip(tmp_path):
    from baselines.evaluate import FixedSchedule, make_noise

    cfg = _tiny()
    env, venv = make_env(cfg)
    model = make_model(cfg, env)
    sig, actions = distill(model, cfg)
    torch.testing.assert_close(sig, venv.schedule_from_actions(torch.as_tensor(actions)))
    # The env, driven by the distilled mean actions, realises exactly that schedule.
    obs, _ = venv.reset(seed=1)
    for a in actions:
        obs, _, term, _, info = venv.step(np.full((cfg.num_envs, 1), a, dtype=np.float32))
    assert term.all()
    np.testing.assert_allclose(info["final_info"]["schedule"][0], sig.numpy(), rtol=1e-6)
    schedules.save_schedule(tmp_path / "schedule.json", sig, "euler", 5, "art-gauss1d")
    loaded = schedules.load_schedule(tmp_path / "schedule.json")
    assert loaded["budget"] == 5 and loaded["solver"] == "euler"
    torch.testing.assert_close(loaded["sigmas"], sig.double())
    p = presets.make("art-gauss1d")
    x_T, streams = make_noise(p, 16, 0)
    ref = steps.sample(p.denoiser, x_T, loaded["sigmas"], solver="euler")
    out = FixedSchedule("art", loaded["sigmas"], "euler").sample(p, x_T, None, streams)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="algo"):
        Config(algo="dqn")
    with pytest.raises(ValueError, match="preset"):
        Config(preset="nope")
    with pytest.raises(ValueError, match="art_ac"):
        Config(algo="art_ac", base="edm")


def test_asymmetric_policy_actor_is_open_loop_critic_sees_x():
    cfg = _tiny(policy_inputs="asymmetric")
    env, _ = make_env(cfg)
    model = make_model(cfg, env)
    obs = torch.as_tensor(env.reset()[:4])
    assert obs.shape[1] > 3  # the critic gets the state, not only the time features
    moved = obs.clone()
    moved[:, 3:] += torch.linspace(1.0, 4.0, moved.shape[1] - 3)  # change x only
    pol = model.policy
    with torch.no_grad():
        a0, a1 = pol._predict(obs, deterministic=True), pol._predict(moved, deterministic=True)
        v0, v1 = pol.predict_values(obs), pol.predict_values(moved)
    assert torch.equal(a0, a1)  # actor: time features only, so distillation is exact
    assert not torch.allclose(v0, v1)  # critic: a per-sample baseline
    with pytest.raises(ValueError, match="asymmetric"):
        make_model(_tiny(algo="sac", policy_inputs="asymmetric"), env)
    env.close()


def test_learning_rate_decays_linearly_to_final():
    cfg = _tiny(learning_rate=1e-3, learning_rate_final=1e-5)
    env, _ = make_env(cfg)
    model = make_model(cfg, env)
    assert model.device == torch.device(cfg.device)  # the SB3 device follows the config
    # SB3 evaluates the schedule at progress_remaining 1 (start) → 0 (end)
    assert model.lr_schedule(1.0) == pytest.approx(1e-3)
    assert model.lr_schedule(0.5) == pytest.approx(0.5 * (1e-3 + 1e-5))
    assert model.lr_schedule(0.0) == pytest.approx(1e-5)
    env.close()


def test_evaluation_adds_classic_baselines_on_a_short_reference(tmp_path):
    from agents.art.report import evaluate_schedule
    from baselines import schedules as B  # noqa: N812
    from diffusion_gym.noise import make_noise

    ev = EvalConfig(num_samples=64, seeds=[0], metrics=["rmse"], rho_grid=[2.0, 7.0],
                    oracle=False, reference_steps=16, train_samples=32,
                    classic=["uniform", "log-linear"])  # fmt: skip
    cfg = _tiny(eval=ev)
    p = presets.make("art-gauss1d")
    res = evaluate_schedule(cfg, schedules.linear(5, 3.0), tmp_path)
    assert {"art-ppo", "edm-rho7", "uniform-linear", "uniform", "log-linear"} <= set(res)
    # independent of the harness: on art-gauss1d every solver is linear in x_T, so sampler
    # and reference map x_T to a·x_T and a_ref·x_T, and RMSE = |a − a_ref|·rms(x_T) on the
    # held-out seed 0 noise with the same 16-step reference
    one = torch.ones(1, 1, dtype=torch.float64)
    a = float(steps.sample(p.denoiser, one, B.classic("uniform", 5, p), solver="euler"))
    a_ref = float(steps.reference_solution(p, one, None, 16))
    x_T, _ = make_noise(p, 64, 0)  # noqa: N806
    want = abs(a - a_ref) * float(x_T.pow(2).mean().sqrt())
    assert res["uniform"]["rmse"]["mean"] == pytest.approx(want, rel=1e-9)
    # the a = 0 schedule is uniform-linear itself
    assert res["art-ppo"]["rmse"]["mean"] == pytest.approx(res["uniform-linear"]["rmse"]["mean"])
    with pytest.raises(ValueError, match="num_threads"):
        run(_tiny(num_threads=0), tmp_path)


@pytest.mark.slow
def test_short_training_beats_initial_schedule_and_resumes(tmp_path):
    # PPO on the terminal error, art-gauss1d Euler K=5 (linear base, a = 0 is uniform: W2 0.212)
    p = presets.make("art-gauss1d")
    cfg = _tiny(total_timesteps=3200, learning_rate=3e-3, log_std_init=-1.0, log_std_final=-3.0)
    res = run(_tiny(total_timesteps=1600, learning_rate=3e-3, log_std_init=-1.0,
                    log_std_final=-3.0), tmp_path, resume=False)  # fmt: skip
    assert "art-ppo" in res and (tmp_path / "schedule.json").is_file()
    assert (tmp_path / "checkpoints" / "step_1600" / "model.zip").is_file()
    res = run(cfg, tmp_path, resume=True)  # continues from step 1600 to 3200
    assert (tmp_path / "checkpoints" / "step_3200" / "state.pt").is_file()
    learned = schedules.load_schedule(tmp_path / "schedule.json")["sigmas"]
    w2_learned = gaussian_1d_w2(p, learned, "euler")
    w2_initial = gaussian_1d_w2(p, schedules.linear(5, 3.0), "euler")
    assert w2_learned < 0.8 * w2_initial
    # the policy's mean schedule along training, one line per rollout (open-loop policy)
    lines = (tmp_path / "mean_schedules.jsonl").read_text().splitlines()
    assert len(lines) >= 2 and len(json.loads(lines[-1])["sigmas"]) == 6
    assert res["art-ppo"]["rmse"]["mean"] < res["uniform-linear"]["rmse"]["mean"]


def _terminal_rewards(env, actions: np.ndarray, budget: int) -> tuple[np.ndarray, list]:
    """Step ``env`` (SB3 view, after reset) through one episode of per-step ``actions`` [K]."""
    n = env.num_envs
    for k in range(budget):
        _, rew, done, infos = env.step(np.full((n, 1), actions[k], dtype=np.float32))
    assert done.all()
    return rew, infos


@pytest.mark.parametrize("kind", ["self_critical", "log_self_critical"])
def test_self_critical_reward_is_error_minus_mean_schedule_error(kind):
    # r = −(mse − mse_b)/m (or log mse_b − log mse) with mse_b the error of the baseline
    # schedule on the same x_T/x_ref: checked against a second, untransformed env run with the
    # baseline's actions.
    cfg = _tiny(reward_transform=kind, preset="gmm-ring8", budget=3, solver="heun",
                base="edm", num_envs=16, bank_size=32)  # fmt: skip
    a, b = np.array([0.3, -0.2, 0.1]), np.array([-0.4, 0.5, 0.0])
    env, venv = make_env(cfg)
    plain, plain_venv = make_env(cfg, reward_transform=False)
    assert find_wrapper(env, SelfCriticalReward) is env  # by isinstance, outermost first
    assert find_wrapper(plain, SelfCriticalReward) is None
    env.reset()  # SB3 views: the seed of make_env applies to the first reset only
    env.set_schedule(plain_venv.schedule_from_actions(torch.as_tensor(b)))
    shaped, infos = _terminal_rewards(env, a, 3)
    mse_a = -np.array([i["env_reward"] for i in infos])
    plain.reset()
    mse_b = -_terminal_rewards(plain, b, 3)[0].astype(np.float64)
    assert mse_a.std() > 0 and not np.allclose(mse_a, mse_b)
    if kind == "log_self_critical":
        expected = np.log(mse_b + 1e-12) - np.log(mse_a + 1e-12)
    else:
        expected = -(mse_a - mse_b) / mse_b.mean()  # the first update: m = mean(mse_b)
    np.testing.assert_allclose(shaped, expected, rtol=1e-5, atol=1e-5)
    # The baseline's own actions earn 0 (up to the float32 of SB3's rewards), while their raw
    # errors spread over x_T: that spread is what the baseline removes from the advantages.
    a32 = torch.as_tensor(a.astype(np.float32), dtype=torch.float64)  # as the env receives them
    env.set_schedule(plain_venv.schedule_from_actions(a32))
    shaped, infos = _terminal_rewards(env, a, 3)
    assert np.ptp([i["env_reward"] for i in infos]) / mse_b.mean() > 1.0
    np.testing.assert_allclose(shaped, 0.0, atol=1e-5)


def test_self_critical_needs_an_open_loop_on_policy_learner():
    for bad in ({"algo": "sac"}, {"policy_inputs": "full"}, {"reward": "local_error"}):
        with pytest.raises(ValueError, match="self_critical"):
            _tiny(reward_transform="self_critical", **bad)


def test_error_bank_sampling_weights_rewards_by_inverse_probability():
    # bank_sampling: error: after set_schedule the env draws entry j with
    # p_j = mix/N + (1 − mix) e_j/Σe (e_j: the mean schedule's error on entry j) and the
    # self-critical reward is multiplied by 1/(N p_j).
    cfg = _tiny(reward_transform="self_critical", preset="gmm-ring8", budget=3, solver="heun",
                base="edm", num_envs=64, bank_size=32, bank_sampling="error",
                bank_sampling_mix=0.25)  # fmt: skip
    a, b = np.array([0.3, -0.2, 0.1]), np.array([-0.4, 0.5, 0.0])
    env, venv = make_env(cfg)  # SelfCriticalReward is the outermost wrapper
    env.reset()
    sig_b = venv.schedule_from_actions(torch.as_tensor(b))
    env.set_schedule(sig_b)
    bank = venv.bank
    x_b = steps.sample(venv.denoiser, bank.x_T, sig_b, class_labels=bank.labels)
    e = (x_b - bank.x_ref).pow(2).mean(1).numpy()
    p = 0.25 / 32 + 0.75 * e / e.sum()
    np.testing.assert_allclose(env.errors, e, rtol=1e-12)  # the whole bank, scored once
    assert venv.bank_weight is None  # the running episodes were drawn uniformly
    _terminal_rewards(env, a, 3)
    idx, w = venv.bank_index.numpy(), venv.bank_weight.numpy()  # the next episodes: by p
    np.testing.assert_allclose(w, 1.0 / (32 * p[idx]), rtol=1e-12)
    assert e[idx].mean() > e.mean()  # high-error entries come up more often
    shaped, infos = _terminal_rewards(env, a, 3)
    mse_a = -np.array([i["env_reward"] for i in infos])
    # r = w (mse_b − mse) / m, m the running weighted mean of mse_b.
    expected = w * (e[idx] - mse_a) / env.scale
    np.testing.assert_allclose(shaped, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())


def test_error_bank_sampling_needs_a_self_critical_reward():
    with pytest.raises(ValueError, match="bank_sampling"):
        _tiny(reward_transform="log", bank_sampling="error")
    with pytest.raises(ValueError, match="bank_sampling_mix"):
        _tiny(reward_transform="self_critical", bank_sampling="error", bank_sampling_mix=0.0)
    with pytest.raises(ValueError, match="bank_sampling"):
        _tiny(bank_sampling="priority")


def test_restarts_keep_the_schedule_with_the_lowest_training_noise_error(tmp_path, monkeypatch):
    import agents.art.trainer as art_trainer
    from baselines import schedules as B

    monkeypatch.setattr(art_trainer, "RESTART_SELECT_SAMPLES", 64)
    cfg = _tiny(total_timesteps=320, restarts=2)
    run(cfg, tmp_path)
    rec = json.loads((tmp_path / "distilled.json").read_text())
    p = presets.make("art-gauss1d")
    data = B.training_set(p, 64, seed=0)
    scores = []
    for r in range(2):  # restart r is seed cfg.seed + r, trained in its own folder
        assert (tmp_path / f"restart{r}" / "checkpoints" / "step_320" / "model.zip").is_file()
        sig = json.loads((tmp_path / f"restart{r}" / "distilled.json").read_text())["sigmas"]
        scores.append(B.schedule_rmse(p, torch.tensor(sig, dtype=torch.float64), "euler", data))
    np.testing.assert_allclose(rec["restart_train_rmse"], scores, rtol=1e-12)
    assert scores[0] != scores[1] and rec["restart"] == int(np.argmin(scores))
    kept = json.loads((tmp_path / f"restart{rec['restart']}" / "distilled.json").read_text())
    assert rec["sigmas"] == kept["sigmas"]
    assert schedules.load_schedule(tmp_path / "schedule.json")["sigmas"].tolist() == kept["sigmas"]
    with pytest.raises(ValueError, match="restarts"):
        _tiny(restarts=0)


def test_art_ac_restarts_use_their_own_actor_critic_seeds(tmp_path, monkeypatch):
    import agents.art.trainer as art_trainer

    monkeypatch.setattr(art_trainer, "RESTART_SELECT_SAMPLES", 64)
    ev = EvalConfig(num_samples=64, seeds=[0], metrics=["rmse"], rho_grid=[7.0], oracle=False)
    cfg = Config(preset="art-gauss1d", budget=5, solver="euler", base="linear",
                 reward="local_error", reward_transform="none", algo="art_ac", restarts=2,
                 actor_critic=ActorCriticConfig(iterations=3, batch_size=16),
                 progress=False, eval=ev)  # fmt: skip
    run(cfg, tmp_path)
    sig = [json.loads((tmp_path / f"restart{r}" / "distilled.json").read_text())["sigmas"]
           for r in range(2)]  # fmt: skip
    assert sig[0] != sig[1]  # restart r: actor_critic.seed + r


def test_state_dependent_policy_is_evaluated_closed_loop_on_the_fixed_rows_noise(tmp_path):
    """policy_inputs: full → closed_loop.json: the policy as a policy, every fixed schedule of
    the run on the same held-out bank entries; the rows are checked against independent runs."""
    from stable_baselines3 import PPO

    from agents.art.closed_loop import final_model_path
    from baselines import evaluate_policy
    from diffusion_gym.envs import ClockVectorEnv

    ev = EvalConfig(num_samples=64, seeds=[0, 1], metrics=["rmse"], rho_grid=[2.0, 7.0],
                    oracle=False)  # fmt: skip
    cfg = _tiny(preset="gmm-ring8", budget=3, solver="unipc-2", base="edm",
                policy_inputs="full", obs_history=True, reward_transform="scale",
                algo_kwargs={"n_steps": 3, "batch_size": 96}, eval=ev)  # fmt: skip
    run(cfg, tmp_path)
    rec = json.loads((tmp_path / "closed_loop.json").read_text())
    rows = rec["results"]
    assert {"policy (closed loop)", "art-ppo", "edm-rho7", "base"} <= set(rows)
    assert (
        rec["seeds"] == [0, 1]
        and rec["bank_seeds"] == [2**40, 2**40 + 1]
        and rec["nfe"] == 3
        and rec["obs_history"] is True
    )
    # the Clock env's base (EDM rho = 7, a = 0) and the harness's EDM rho = 7 through
    # steps.sample: the same schedule on the same entries, so the same RMSE bit for bit
    assert rows["edm-rho7"]["rmse"]["values"] == rows["base"]["rmse"]["values"]
    best = min((r for r in rows if r not in ("policy (closed loop)", "base")),
               key=lambda r: rows[r]["rmse"]["mean"])  # fmt: skip
    assert rec["best_fixed"] == best
    assert rec["policy_over_best_fixed"] == pytest.approx(
        rows["policy (closed loop)"]["rmse"]["mean"] / rows[best]["rmse"]["mean"], rel=1e-12
    )
    assert len(rec["policy_schedule"]["log_sigma_std"]) == 2  # K − 1 free steps
    # the policy row, re-scored from the saved model by the public helper
    model = PPO.load(final_model_path(tmp_path), device="cpu")
    assert rec["model"] == str(final_model_path(tmp_path))
    env = ClockVectorEnv("gmm-ring8", budget=3, solver="unipc-2", obs_history=True,
                         reference_steps=32, bank_size=8, num_envs=1)  # fmt: skip
    again = evaluate_policy(env, model, num_samples=64, seed=[2**40, 2**40 + 1], metrics=["rmse"])
    assert again["policy"]["rmse"]["values"] == rows["policy (closed loop)"]["rmse"]["values"]
    assert "closed loop" in (tmp_path / "closed_loop.md").read_text()
    with pytest.raises(TypeError, match="obs_history"):
        _tiny(obs_history=1)


def test_residual_schedule_policy_starts_at_the_fixed_schedule(tmp_path):
    """residual_schedule: the env receives clip(a + a*_k); a zero policy is the fixed schedule
    in training, in distillation and in the closed-loop evaluation."""
    from agents.art.closed_loop import _ResidualPolicy
    from agents.art.wrappers import ResidualActions
    from baselines import evaluate_policy
    from diffusion_gym.envs.clock import schedule_from_actions

    target = schedule_from_actions([0.4, -0.3, 0.0], base="edm")  # a reachable schedule
    path = tmp_path / "start.json"
    schedules.save_schedule(path, target, "unipc-2", 3, "gmm-ring8")
    cfg = _tiny(preset="gmm-ring8", budget=3, solver="unipc-2", base="edm",
                policy_inputs="full", reward_transform="scale", residual_schedule=str(path),
                algo_kwargs={"n_steps": 3, "batch_size": 96})  # fmt: skip
    env, venv = make_env(cfg)
    res = find_wrapper(env, ResidualActions)
    np.testing.assert_allclose(res.offsets, [0.4, -0.3, 0.0], atol=1e-12)
    np.testing.assert_array_equal(res.env_actions(np.array([[0.9], [-0.5]]), 0),
                                  np.float32([[1.0], [-0.1]]))  # clipped to [-1, 1]  # fmt: skip
    model = make_model(cfg, env)
    with torch.no_grad():  # a policy whose mean output is 0 everywhere
        model.policy.action_net.weight.zero_()
        model.policy.action_net.bias.zero_()
    sig, actions = distill(model, cfg)
    np.testing.assert_allclose(actions, np.float32([0.4, -0.3, 0.0]), atol=1e-7)
    torch.testing.assert_close(sig, target, rtol=1e-6, atol=1e-9)  # float32 actions
    # the closed-loop actor adds the step's offset from the observation's k / K column
    pol = _ResidualPolicy(model, res, 3)
    ev = evaluate_policy(venv, pol, num_samples=32, seed=2**40, metrics=["rmse"],
                         schedules={"start": target})  # fmt: skip
    got = ev.policy_schedules[0]
    np.testing.assert_allclose(got, np.broadcast_to(sig.numpy(), got.shape), rtol=1e-5)
    assert ev.mean("policy") == pytest.approx(ev.mean("start"), rel=1e-5)
    env.close()
    with pytest.raises(FileNotFoundError, match="residual_schedule"):
        _tiny(residual_schedule=str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="no schedule is shipped"):
        _tiny(residual_schedule="published")  # nothing shipped for art-gauss1d × euler
    with pytest.raises(ValueError, match="budget is 5"):
        _tiny(residual_schedule=str(path))
