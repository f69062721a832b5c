"""IRL on any schedule, started at the best constant (issue #20 items 5 and 7): ``env.schedule``
as a name, explicit σ's or a ``schedule.json``; ``policy.init``; ``policy.keep_best``;
``discriminator.reward_steps``; the reward diagnosis; IRL rows in the compare harness."""

import json

import numpy as np
import pytest
import torch

from agents.discriminator import Discriminator, DiscriminatorConfig, grad_penalty
from agents.irl import IRLTrainer, decode_step_class
from agents.irl.compare import guidance_schedule, run_irl_compare, save_guidance_schedules
from agents.irl.diagnose import load_run, rank_agreement, reward_diagnosis
from agents.irl.loop import run
from agents.irl.seeds import load_evals, over_seeds, plot_temperature, seeds_markdown
from agents.policies import action_logits, start_at_action
from agents.train import load_config
from baselines.compare import load_config as load_compare
from baselines.evaluate import FixedSchedule, evaluate
from diffusion_gym import presets, schedules
from diffusion_gym.config import ConfigError, to_dict
from diffusion_gym.io import atomic_write_yaml

ORACLE5 = [80.0, 1.8248, 0.4906, 0.0]
ORACLE5_T = torch.tensor(ORACLE5, dtype=torch.float64)  # (a list would be saved as float32)


def tiny(overrides=()):
    data = {
        "agent": "irl",
        "seed": 0,
        "rounds": 2,
        "progress": False,
        "env": {"num_envs": 32, "gammas": [0.0, 0.4], "guidance_weights": [0.0, 1.0, 2.0]},
        "algo": {"net_arch": [16, 16], "learning_rate": 0.003, "batch_size": 64},
        "discriminator": {"hidden": [16, 16], "batch_size": 64},
        "eval": {"num_samples": 128, "seeds": [0], "metrics": ["energy"]},
        "policy": {"init_samples": 128},
    }
    return load_config(data, ["num_threads=1", *overrides])[1]


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# -- env.schedule ------------------------------------------------------------------------------


def test_schedule_name_explicit_sigmas_and_schedule_json(tmp_path):
    named = IRLTrainer(tiny())
    assert named.env.num_steps == 4  # the old default for a named schedule
    assert torch.equal(named.env.sigmas.cpu(), schedules.karras(4, 0.002, 80.0))
    explicit = IRLTrainer(tiny([f"env.schedule={ORACLE5}"]))
    assert explicit.env.sigmas.cpu().tolist() == ORACLE5
    assert explicit.model.n_steps == 3  # one episode of 3 steps per env and round
    path = tmp_path / "schedule.json"
    schedules.save_schedule(path, ORACLE5_T, "heun", 3, "gmm-ring8-imperfect", nfe=5)
    from_file = IRLTrainer(tiny([f"env.schedule={path}", "env.num_steps=3"]))
    assert from_file.env.sigmas.cpu().tolist() == ORACLE5


@pytest.mark.parametrize(
    "override, error, match",
    [
        ("env.schedule=karas", ConfigError, "schedule name .* or the path of a schedule.json"),
        (f"env.schedule={[1.0, 2.0, 0.0]}", ConfigError, "strictly decreasing"),
        (f"env.schedule={ORACLE5}", None, None),  # with num_steps=4 below: disagreement
        ("env.schedule=missing/schedule.json", FileNotFoundError, "no schedule file"),
    ],
)
def test_bad_schedules_fail_with_clear_errors(override, error, match):
    if error is None:
        with pytest.raises(ConfigError, match="env.num_steps=4 disagrees with env.schedule's 3"):
            tiny([override, "env.num_steps=4"])
        return
    with pytest.raises(error, match=match):
        tiny([override])


def test_schedule_json_of_another_solver_or_preset_is_refused(tmp_path):
    path = tmp_path / "s.json"
    schedules.save_schedule(path, ORACLE5_T, "euler", 3, "gmm-ring8-imperfect")
    with pytest.raises(ConfigError, match="made for solver 'euler', but env.solver is 'heun'"):
        tiny([f"env.schedule={path}"])
    schedules.save_schedule(path, ORACLE5_T, "heun", 3, "gmm-grid")
    with pytest.raises(ConfigError, match="made for preset 'gmm-grid'"):
        tiny([f"env.schedule={path}"])
    path.write_text(json.dumps({"sigmas": ORACLE5}))
    with pytest.raises(ConfigError, match="missing keys"):
        tiny([f"env.schedule={path}"])


# -- policy.init -------------------------------------------------------------------------------


def test_start_at_action_sets_a_state_independent_distribution():
    tr = IRLTrainer(tiny())
    start_at_action(tr.model.policy, 3, 0.8)
    obs, _ = tr.env.reset(seed=1)
    p = torch.softmax(action_logits(tr.model.policy, torch.as_tensor(obs))[0], -1)
    expect = torch.full((6,), 0.2 / 5)
    expect[3] = 0.8
    torch.testing.assert_close(p, expect.expand_as(p), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"action must be in \[0, 6\)"):
        start_at_action(tr.model.policy, 6, 0.8)


def test_constant_start_samples_like_the_constant_row():
    """The untrained policy started at (w, γ) = (2, 0.4) is that constant: same samples as
    the harness's constant row on the same noise."""
    cfg = tiny(["policy.init=constant", "policy.init_action=[2.0, 0.4]"])
    tr = IRLTrainer(cfg)
    const = FixedSchedule("c", tr.env.sigmas.cpu(), "heun", guidance=2.0, gamma=0.4)
    samples: dict = {}
    evaluate([tr.strategy(), const], tr.env.preset, num_samples=64, seeds=[5],
             metrics=["energy"], progress=False, samples_out=samples)  # fmt: skip
    torch.testing.assert_close(samples["irl-policy"], samples["c"].to(samples["irl-policy"]))


def test_best_constant_start_is_the_harness_best_and_leaves_the_rng_alone():
    best = IRLTrainer(tiny(["policy.init=best_constant"]))
    scores = best.start["scores"]
    assert best.start["row"] == min(scores, key=scores.get)
    # the scores are the harness's own, on the validation seed
    w, g = best.start["action"]
    row = FixedSchedule("x", best.env.sigmas.cpu(), "heun", guidance=w, gamma=g)
    res = evaluate([row], best.env.preset, num_samples=128, seeds=[best.cfg.policy.init_seed],
                   metrics=["energy"], progress=False)  # fmt: skip
    assert res["x"]["energy"]["mean"] == pytest.approx(scores[best.start["row"]], rel=1e-9)
    # the search consumed no global randomness: same discriminator as a plain constant start
    same = IRLTrainer(tiny(["policy.init=constant", f"policy.init_action={[w, g]}"]))
    for a, b in zip(best.disc.parameters(), same.disc.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["policy.init=constant"], "needs policy.init_action"),
        (["policy.init=constant", "policy.init_action=[1.5, 0.0]"], "not in the action table"),
        (["policy.init=best_constant", "policy.init_seed=0"], "is an evaluation seed"),
        (["policy.init_prob=1.0"], r"init_prob must be in \(0, 1\)"),
        (["policy.init_action=[1.0, 0.0]"], "is for policy.init=constant"),
        (["policy.init_metric=loglik"], "must be one of eval.metrics"),
        (["policy.init=best"], "policy.init must be one of"),
        (["policy.kl_coef=0.1"], "needs a start to stay near"),
    ],
)
def test_bad_policy_settings(overrides, match):
    with pytest.raises(ConfigError, match=match):
        tiny(overrides)


# -- discriminator.reward_steps, keep_best --------------------------------------------------------


def test_last_step_rewards_only_the_final_sample():
    tr = IRLTrainer(
        tiny(["discriminator.reward_steps=last", "discriminator.divergence=reverse_kl"])
    )
    tr.train_round()
    buf = tr.model.rollout_buffer
    states = tr.last_rollout["states"]
    k, _ = decode_step_class(tr.env, states)
    rewards = torch.as_tensor(buf.rewards.reshape(-1))
    final = k == tr.env.num_steps
    assert final.any() and (~final).any()
    assert bool((rewards[~final] == 0).all())
    assert bool((rewards[final] != 0).all())


def test_weighted_r1_penalty_and_final_state_weight():
    d = Discriminator(3, DiscriminatorConfig(hidden=(8,)))
    s = torch.randn(16, 3, generator=torch.Generator().manual_seed(0))
    plain = grad_penalty(d, s)
    torch.testing.assert_close(grad_penalty(d, s, torch.ones(16)), plain)
    w = torch.zeros(16)
    w[:4] = 2.0
    torch.testing.assert_close(grad_penalty(d, s, w), 2 * grad_penalty(d, s[:4]) * 4 / 16)
    with pytest.raises(ConfigError, match="grad_penalty_final > 0 needs grad_penalty > 0"):
        tiny(["discriminator.grad_penalty=0", "discriminator.grad_penalty_final=1"])
    # R1 off on x_0 only: the run differs from plain R1 (the weight reaches the update)
    runs = []
    for extra in ([], ["discriminator.grad_penalty_final=0"]):
        tr = IRLTrainer(tiny(["discriminator.grad_penalty=1", *extra]))
        tr.train_round()
        runs.append(torch.cat([p.flatten() for p in tr.disc.parameters()]))
    assert not torch.equal(runs[0], runs[1])


def test_kl_penalty_to_the_start_enters_every_reward():
    over = ["policy.init=constant", "policy.init_action=[1.0, 0.4]", "policy.init_prob=0.7",
            "discriminator.divergence=reverse_kl"]  # fmt: skip
    plain = IRLTrainer(tiny(over))
    kl = IRLTrainer(tiny([*over, "policy.kl_coef=0.5"]))
    for tr in (plain, kl):
        tr.train_round()
    buf = kl.model.rollout_buffer
    a = buf.actions.reshape(-1).astype(int)
    log_pi0 = np.where(a == kl.start["index"], np.log(0.7), np.log(0.3 / 5))
    penalty = 0.5 * (buf.log_probs.reshape(-1) - log_pi0)
    # same seed, same first rollout: the rewards differ by the penalty alone
    np.testing.assert_allclose(
        buf.rewards.reshape(-1), plain.model.rollout_buffer.rewards.reshape(-1) - penalty,
        rtol=1e-5, atol=1e-5,
    )  # fmt: skip


def test_keep_best_ends_with_the_best_validated_policy(tmp_path):
    cfg = tiny(["rounds=3", "policy.keep_best=true", "policy.select_every=1",
                "policy.init=best_constant", "checkpoint_every=3"])  # fmt: skip
    run(cfg, tmp_path)
    sel = json.loads((tmp_path / "selection.json").read_text())
    history = sel["history"]
    assert [r for r, _ in history] == [0, 1, 2, 3]
    best_round, best = min(history, key=lambda h: (h[1], h[0]))
    assert (sel["round"], sel["score"]) == (best_round, best)
    # a run directory loads with the selected parameters (what its evaluation scored)
    atomic_write_yaml(tmp_path / "config.yaml", to_dict(cfg))
    assert load_run(tmp_path).validate() == pytest.approx(best, rel=1e-9)


# -- diagnosis -----------------------------------------------------------------------------------


def test_rank_agreement():
    rows = {str(i): {"return": -float(i), "energy": float(i)} for i in range(5)}
    assert rank_agreement(rows, "energy") == pytest.approx(1.0)
    rows = {str(i): {"return": float(i), "energy": float(i)} for i in range(5)}
    assert rank_agreement(rows, "energy") == pytest.approx(-1.0)


@pytest.mark.parametrize("fmt", ["discrete", "box"])
def test_reward_diagnosis_rows_are_the_policy_and_every_constant(fmt):
    tr = IRLTrainer(tiny(["discriminator.divergence=reverse_kl", f"env.action_format={fmt}"]))
    tr.train_round()
    n = tr.env.num_steps
    prof = {"same": [(1.0, 0.4)] * n, "interval": [(1.0, 0.0)] * (n - 1) + [(2.0, 0.0)]}
    d = reward_diagnosis(tr, num_samples=64, seed=99, profiles=prof)
    assert set(d["rows"]) == {"irl-policy", "same", "interval"} | {
        f"const-w{w:g}-g{g:g}" for w in (0, 1, 2) for g in (0, 0.4)
    }
    # a constant profile is that constant's row: same states, rewards and samples
    same, const = d["rows"]["same"], d["rows"]["const-w1-g0.4"]
    assert same["return"] == const["return"]
    assert same["energy"] == pytest.approx(const["energy"], rel=1e-9)
    with pytest.raises(ValueError, match="not in the action table"):
        reward_diagnosis(tr, 16, 1, profiles={"x": [(1.5, 0.0)] * n})
    for r in d["rows"].values():
        assert len(r["steps"]) == tr.env.num_steps
        assert r["return"] == pytest.approx(sum(s["reward"] for s in r["steps"]))
        assert all(0 <= s["accuracy"] <= 1 for s in r["steps"])
    assert -1 <= d["rank_agreement"] <= 1


# -- the compare harness ---------------------------------------------------------------------------


def test_irl_row_in_the_compare_harness_shares_the_noise(tmp_path):
    """An IRL run on the config's guidance schedule, started at w = 1, γ = 0 with a frozen
    learner, scores exactly the config's cfg-1.0 row: same noise, same sampler."""
    ccfg = load_compare({
        "presets": ["gmm-ring8-imperfect"], "nfe": [5], "strategies": ["cfg-1.0", "churn-1.0"],
        "guidance_schedule": "edm-rho7", "seeds": [0, 1], "num_samples": 64,
        "metrics": ["energy", "nfe"],
    })  # fmt: skip
    paths = save_guidance_schedules(ccfg, tmp_path / "sched")
    path = paths["gmm-ring8-imperfect/nfe5"]
    sig = guidance_schedule(presets.make("gmm-ring8-imperfect"), 5, ccfg)
    assert torch.equal(schedules.load_schedule(path)["sigmas"], sig)
    cfg = tiny([f"env.schedule={path}", "rounds=1", "algo.learning_rate=1e-12",
                "policy.init=constant", "policy.init_action=[1.0, 0.0]", "policy.init_prob=0.99",
                "discriminator.reward_steps=last"])  # fmt: skip
    run(cfg, tmp_path / "run")
    atomic_write_yaml(tmp_path / "run" / "config.yaml", to_dict(cfg))  # as `train` writes it
    res = run_irl_compare(ccfg, {"p": tmp_path / "run"}, tmp_path / "cmp", progress=False)
    sec = res["gmm-ring8-imperfect/nfe5"]
    assert set(sec) == {"cfg-1.0", "churn-1.0", "irl:p"}
    # equal up to float rounding (the env and steps.sample combine the guided call alike)
    assert sec["irl:p"]["energy"]["values"] == pytest.approx(
        sec["cfg-1.0"]["energy"]["values"], rel=1e-12
    )
    assert sec["irl:p"]["nfe"]["mean"] == 5
    assert np.isfinite(sec["churn-1.0"]["energy"]["mean"])
    assert (tmp_path / "cmp" / "gmm-ring8-imperfect" / "nfe5" / "eval.md").is_file()


# -- over training seeds -------------------------------------------------------------------------


def test_over_seeds_table_and_temperature_plot(tmp_path):
    runs = []
    for i, (e, p) in enumerate([(0.1, 0.7), (0.3, 0.9)]):
        d = tmp_path / f"s{i}"
        d.mkdir()
        row = lambda v, q: {"energy": {"mean": v, "std": 0.0}, "precision": {"mean": q}}  # noqa: E731
        data = {"irl-policy": row(e, p), "irl-tau1": row(2 * e, p - 0.1),
                "const-w1-g0": row(0.15, 0.8), "const-w2-g0": row(0.5, 0.95)}  # fmt: skip
        (d / "eval.json").write_text(json.dumps(data))
        runs.append(d)
    table = over_seeds(load_evals(runs))
    assert table["irl-policy"]["energy"]["mean"] == pytest.approx(0.2)
    assert table["irl-policy"]["energy"]["std"] == pytest.approx(0.02**0.5)  # sample std
    md = seeds_markdown(table, ["energy", "precision"], 2)
    assert "| irl-tau1 | 0.4 ± 0.28 |" in md
    assert "const-w1-g0 (best constant: energy)" in md
    assert "const-w2-g0 (best constant: precision)" in md
    plot_temperature(table, ["energy", "precision"], tmp_path / "t.png")
    assert (tmp_path / "t.png").stat().st_size > 0
    with pytest.raises(FileNotFoundError, match="no eval.json"):
        load_evals([tmp_path])


def test_report_cli_reevaluates_a_finished_run(tmp_path):
    """``python -m agents.irl.report RUN --out DIR`` scores the run's kept policy again on its
    eval config: the same eval.json as the run's own evaluation; a missing run exits 2."""
    from agents.irl import report

    cfg = tiny(["rounds=2", "policy.keep_best=true", "policy.select_every=1",
                "checkpoint_every=2"])  # fmt: skip
    run(cfg, tmp_path / "run")
    atomic_write_yaml(tmp_path / "run" / "config.yaml", to_dict(cfg))
    assert report.main([str(tmp_path / "run"), "--out", str(tmp_path / "re"), "--no-progress"]) == 0
    own = json.loads((tmp_path / "run" / "eval.json").read_text())
    again = json.loads((tmp_path / "re" / "eval.json").read_text())
    assert again["irl-policy"]["energy"]["mean"] == pytest.approx(
        own["irl-policy"]["energy"]["mean"], rel=1e-12
    )
    assert report.main([str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 2


def test_image_grids_put_each_rows_samples_side_by_side(tmp_path):
    from baselines.plotting import plot_image_grids

    g = torch.Generator().manual_seed(0)
    samples = {"a": torch.rand(40, 1, 8, 8, generator=g) * 2 - 1, "b": -torch.ones(40, 1, 8, 8)}
    path = plot_image_grids(samples, torch.arange(40) % 4, ["a", "b"], ["A", "B"],
                            tmp_path / "g.png")  # fmt: skip
    assert path.stat().st_size > 1000
    # classes with fewer than per_class samples (32 samples, 10 classes) are padded
    few = {"a": samples["a"][:32], "b": samples["b"][:32]}
    plot_image_grids(few, torch.arange(32) % 10, ["a", "b"], ["A", "B"], tmp_path / "h.png")
    assert (tmp_path / "h.png").stat().st_size > 1000


# -- the Gaussian IRL policy (env.action_format=box) ---------------------------------------------


def test_gaussian_start_samples_like_the_constant_row():
    """``env.action_format=box``: the untrained Gaussian policy started at (w, γ) = (2, 0.4)
    has that constant as its mean, so its deterministic samples are the constant row's."""
    cfg = tiny(["env.action_format=box", "policy.init=constant", "policy.init_action=[2.0, 0.4]",
                "policy.init_std=0.05"])  # fmt: skip
    tr = IRLTrainer(cfg)
    assert tr.start["mean"] == [2.0, 0.4] and tr.env.action_table.box_names == ("w", "gamma")
    const = FixedSchedule("c", tr.env.sigmas.cpu(), "heun", guidance=2.0, gamma=0.4)
    samples: dict = {}
    evaluate([tr.strategy(), const], tr.env.preset, num_samples=64, seeds=[5],
             metrics=["energy"], progress=False, samples_out=samples)  # fmt: skip
    torch.testing.assert_close(samples["irl-policy"], samples["c"].to(samples["irl-policy"]))


def test_gaussian_irl_trains_keeps_best_and_evaluates(tmp_path):
    """A box run: PPO-Gaussian rounds, the KL penalty to N(start, std²) in the buffer, the
    chosen w per step inside the box, keep_best, the report (τ rows: N(μ, τσ²) draws)."""
    cfg = tiny(["env.action_format=box", "policy.init=best_constant", "policy.keep_best=true",
                "policy.select_every=1", "policy.kl_coef=0.5", "policy.init_std=0.2",
                "eval.temperatures=[1.0]", "rounds=2", "checkpoint_every=2"])  # fmt: skip
    tr = IRLTrainer(cfg)
    tr.train_round()
    buf = tr.model.rollout_buffer
    w, g = tr.chosen_per_step()
    assert w.shape == (tr.env.num_steps,) and ((w >= 0.0) & (w <= 2.0)).all()
    assert ((g >= 0.0) & (g <= 0.4)).all()
    acts = torch.as_tensor(buf.actions.reshape(-1, 2), dtype=torch.float64)
    pi0 = torch.distributions.Normal(torch.tensor(tr.start["mean"], dtype=torch.float64), 0.2)
    expect = torch.as_tensor(buf.log_probs.reshape(-1), dtype=torch.float64) - pi0.log_prob(
        acts
    ).sum(-1)
    torch.testing.assert_close(tr.kl_to_start(buf.log_probs, buf.actions), expect)
    run(cfg, tmp_path)
    ev = json.loads((tmp_path / "eval.json").read_text())
    assert {"irl-policy", "irl-tau1"} <= set(ev)
    assert (tmp_path / "policy_actions.png").stat().st_size > 1000


def test_gaussian_policy_config_errors():
    with pytest.raises(ValueError, match="Gaussian policy"):
        tiny(["env.action_format=box", "algo.name=maskable_ppo"])
    with pytest.raises(ValueError, match="init_std"):
        tiny(["env.action_format=box", "policy.init_std=0"])
    with pytest.raises(ValueError, match="action_format"):
        tiny(["env.action_format=cube"])
