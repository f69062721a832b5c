"""diffusion_gym.integrations.diffusers: a diffusers-style loop with DiffusionGymScheduler
equals steps.sample with the same schedule, solver and weights (issue #21 items 1, 2).

A tiny randomly initialised UNet2DModel (4 channels, 8x8), nothing downloaded. The loop is the
one of diffusers' pipelines (DDPMPipeline, with scale_model_input and CFG as in the
StableDiffusion pipelines): ``for t in scheduler.timesteps: x = step(model(scale(x), t), t, x)``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")

from diffusers import UNet2DModel  # noqa: E402
from stable_baselines3 import PPO  # noqa: E402

from agents.vec_env import SB3VecEnv  # noqa: E402
from baselines.guidance import GuidanceNet, LearnedGuidance  # noqa: E402
from diffusion_gym import schedules, steps  # noqa: E402
from diffusion_gym.denoisers.adapters import EDMNetDenoiser, EpsilonDenoiser  # noqa: E402
from diffusion_gym.envs import GuidanceVectorEnv  # noqa: E402
from diffusion_gym.integrations.diffusers import (  # noqa: E402
    DiffusionGymScheduler,
    GuidanceController,
)

NUM_CLASSES = 3
SIGMAS = schedules.karras(6, 0.02, 40.0, 7.0)


def tiny_unet(num_class_embeds: int | None = None, seed: int = 0) -> UNet2DModel:
    torch.manual_seed(seed)
    unet = UNet2DModel(
        sample_size=8, in_channels=2, out_channels=2, layers_per_block=1,
        block_out_channels=(8, 8), down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4, add_attention=False,
        num_class_embeds=num_class_embeds,
    )  # fmt: skip
    # Random weights, scaled up so the output depends visibly on (x, t): a zero-initialised
    # output conv would make every solver agree trivially.
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.03 * torch.randn_like(p))
    return unet.eval().requires_grad_(False)


def pipeline_loop(unet, scheduler, latents, labels=None, guidance_scale=1.0, callback=None):
    """diffusers' denoising loop (DDPMPipeline; CFG as in StableDiffusionPipeline)."""

    class Pipe:  # what callback_on_step_end receives (the pipeline)
        _guidance_scale = guidance_scale

    pipe = Pipe()
    x = latents * scheduler.init_noise_sigma
    for i, t in enumerate(scheduler.timesteps):
        inp = scheduler.scale_model_input(x, t)
        if labels is None:
            out = unet(inp, t).sample
        else:  # CFG: one batch of [cond, uncond]; the null label is the last embedding row
            null = torch.full_like(labels, NUM_CLASSES)
            both = unet(torch.cat([inp, inp]), t, class_labels=torch.cat([labels, null])).sample
            cond, uncond = both.chunk(2)
            out = uncond + pipe._guidance_scale * (cond - uncond)
        x = scheduler.step(out, t, x).prev_sample
        if callback is not None:
            callback(pipe, i, t, {"latents": x})
    return x


def vp_denoiser(unet, scheduler, num_classes=0):
    def eps_net(x_vp, t, labels):
        return unet(x_vp, t, class_labels=labels).sample

    return EpsilonDenoiser(
        eps_net, scheduler.alphas_cumprod.double(), (2, 8, 8), num_classes,
        prediction_type=scheduler.config.prediction_type, timesteps="interpolate",
    )  # fmt: skip


def max_rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("solver", steps.SOLVERS)
def test_unconditional_loop_equals_steps_sample(solver):
    unet = tiny_unet()
    sched = DiffusionGymScheduler(sigmas=SIGMAS.tolist(), solver=solver)
    sched.set_timesteps(len(SIGMAS) - 1)
    assert len(sched.timesteps) == steps.nfe_of(len(SIGMAS) - 1, solver)
    eps = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(1))
    x_pipe = pipeline_loop(unet, sched, eps)
    x_ref = steps.sample(vp_denoiser(unet, sched), SIGMAS[0] * eps, SIGMAS, solver=solver)
    assert max_rel(x_pipe, x_ref) <= 1e-5
    # The solvers differ on this model, so the equality is per solver, not trivial.
    x_euler = steps.sample(vp_denoiser(unet, sched), SIGMAS[0] * eps, SIGMAS, solver="euler")
    assert solver == "euler" or max_rel(x_euler, x_ref) > 1e-3


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
def test_other_vp_predictions(prediction_type):
    unet = tiny_unet()
    sched = DiffusionGymScheduler(sigmas=SIGMAS.tolist(), solver="dpmpp-2m",
                                  prediction_type=prediction_type)  # fmt: skip
    eps = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(2))
    x_pipe = pipeline_loop(unet, sched, eps)
    x_ref = steps.sample(vp_denoiser(unet, sched), SIGMAS[0] * eps, SIGMAS, solver="dpmpp-2m")
    assert max_rel(x_pipe, x_ref) <= 1e-5


@pytest.mark.parametrize("solver", steps.SOLVERS)
def test_class_conditional_cfg_per_step_weights(solver):
    unet = tiny_unet(num_class_embeds=NUM_CLASSES + 1)
    sched = DiffusionGymScheduler(sigmas=SIGMAS.tolist(), solver=solver)
    sched.set_timesteps()
    n = len(SIGMAS) - 1
    weights = [1.0 + 0.5 * k for k in range(n)]  # a ramp: every evaluation's weight matters
    ctrl = GuidanceController(sched, weights=weights)
    labels = torch.tensor([0, 2])
    eps = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(3))
    x_pipe = pipeline_loop(unet, sched, eps, labels, ctrl.first_weight(eps), callback=ctrl)
    den = vp_denoiser(unet, sched, NUM_CLASSES)
    x_ref = steps.sample(den, SIGMAS[0] * eps, SIGMAS, class_labels=labels,
                         guidance=torch.tensor(weights), solver=solver)  # fmt: skip
    assert max_rel(x_pipe, x_ref) <= 1e-5
    x_w1 = steps.sample(den, SIGMAS[0] * eps, SIGMAS, class_labels=labels, solver=solver)
    assert max_rel(x_w1, x_ref) > 1e-3  # the weights reached the model calls


def test_omega_controller_per_sample_weights():
    unet = tiny_unet(num_class_embeds=NUM_CLASSES + 1)
    sched = DiffusionGymScheduler(sigmas=SIGMAS.tolist(), solver="heun")
    labels = torch.tensor([0, 1])

    def omega(c, s, t):  # ω(c, s, t) >= 0 of Learn to Guide's signature
        return 0.3 * (c.double() + 1) * (t.log() - s.clamp_min(1e-3).log()).abs()

    ctrl = GuidanceController.from_omega(sched, omega, labels)
    assert ctrl.weights.shape == (len(SIGMAS) - 1, 2)
    eps = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(4))
    x_pipe = pipeline_loop(unet, sched, eps, labels, ctrl.first_weight(eps), callback=ctrl)
    x_ref = steps.sample(vp_denoiser(unet, sched, NUM_CLASSES), SIGMAS[0] * eps, SIGMAS,
                         class_labels=labels, guidance=ctrl.weights, solver="heun")  # fmt: skip
    assert max_rel(x_pipe, x_ref) <= 1e-5


def test_omega_controller_matches_learned_guidance_weights():
    """With a Learn to Guide GuidanceNet the weights equal baselines' LearnedGuidance."""
    torch.manual_seed(0)
    net = GuidanceNet(NUM_CLASSES, hidden=8, init_omega=0.7)
    sched = DiffusionGymScheduler(sigmas=SIGMAS.tolist(), solver="heun")
    labels = torch.tensor([2, 0, 1])
    ctrl = GuidanceController.from_omega(sched, net, labels)
    ref = LearnedGuidance("l2g", SIGMAS, net, "heun").weights(labels)
    assert torch.equal(ctrl.weights, ref.double())


def test_policy_controller_is_called_once_per_step_with_the_state():
    unet = tiny_unet(num_class_embeds=NUM_CLASSES + 1)
    sched = DiffusionGymScheduler(sigmas=SIGMAS.tolist(), solver="heun")
    labels = torch.tensor([1, 2])
    seen = []
    sched.set_timesteps()

    def policy(x, k):  # closed loop: the weight depends on the sample
        seen.append(k)
        return 1.0 + float(x.abs().mean()) / (1.0 + float(sched.sigmas[k]))

    ctrl = GuidanceController(sched, policy=policy)
    eps = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(5))
    x_pipe = pipeline_loop(unet, sched, eps, labels, ctrl.first_weight(eps * sched.sigmas[0]),
                           callback=ctrl)  # fmt: skip
    assert seen == list(range(len(SIGMAS) - 1))
    w0 = policy(SIGMAS[0].float() * eps, 0)
    den = vp_denoiser(unet, sched, NUM_CLASSES)
    x, w = SIGMAS[0].float() * eps, w0
    for k in range(len(SIGMAS) - 1):
        x, _ = steps.step(den, x, float(SIGMAS[k]), float(SIGMAS[k + 1]), class_labels=labels,
                          guidance=w, solver="heun")  # fmt: skip
        if k + 1 < len(SIGMAS) - 1:
            w = policy(x, k + 1)
    assert max_rel(x_pipe, x) <= 1e-5


def test_edm_sample_prediction_with_package_network():
    torch.manual_seed(0)

    class Toy(torch.nn.Module):  # an EDM denoiser D(x; σ) (the package's convention)
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 4)

        def forward(self, x, sigma, labels=None):
            s = sigma.reshape(-1, 1)
            return torch.tanh(self.lin(x / (1 + s**2).sqrt())) * (1 + 0.1 * s.log())

    net = Toy()
    sched = DiffusionGymScheduler(sigmas=SIGMAS.tolist(), solver="unipc-3", model_type="edm",
                                  prediction_type="sample")  # fmt: skip
    eps = torch.randn(3, 4, generator=torch.Generator().manual_seed(6))
    x = eps * sched.init_noise_sigma
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(net(sched.scale_model_input(x, t), t.expand(3)), t, x).prev_sample
    den = EDMNetDenoiser(net, (4,), 0, 0.02, 40.0)
    x_ref = steps.sample(den, SIGMAS[0] * eps, SIGMAS, solver="unipc-3")
    assert max_rel(x, x_ref) <= 1e-5


def test_save_load_round_trip(tmp_path):
    sched = DiffusionGymScheduler(sigmas=SIGMAS.tolist(), solver="dpmpp-3m",
                                  prediction_type="v_prediction", beta_schedule="scaled_linear",
                                  beta_start=0.00085, beta_end=0.012, sigma_min=0.002,
                                  sigma_max=80.0)  # fmt: skip
    sched.save_pretrained(tmp_path)
    assert (tmp_path / "scheduler_config.json").is_file()
    again = DiffusionGymScheduler.from_pretrained(tmp_path)
    for key in ("sigmas", "solver", "prediction_type", "beta_schedule", "sigma_min", "sigma_max"):
        assert again.config[key] == sched.config[key], key
    assert torch.equal(again.timesteps, sched.timesteps)
    assert torch.equal(again.alphas_cumprod, sched.alphas_cumprod)


def test_tensor_sigmas_are_stored_as_floats_and_add_noise(tmp_path):
    sched = DiffusionGymScheduler(sigmas=SIGMAS, solver="heun")
    sched.save_pretrained(tmp_path)
    assert DiffusionGymScheduler.from_pretrained(tmp_path).config.sigmas == SIGMAS.tolist()
    x0, n = torch.randn(2, 3), torch.randn(2, 3)
    ts = sched.timesteps[[0, 3]]
    expect = x0 + sched.eval_sigmas[[0, 3]][:, None] * n
    assert torch.allclose(sched.add_noise(x0, n, ts), expect)


def test_from_schedule_json(tmp_path):
    path = tmp_path / "schedule.json"
    schedules.save_schedule(path, SIGMAS, "ipndm", len(SIGMAS) - 1, "gmm-ring8")
    sched = DiffusionGymScheduler.from_schedule(path)
    assert sched.config.solver == "ipndm"
    assert torch.allclose(sched.sigmas.double(), SIGMAS, rtol=1e-6)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="solver must be one of"):
        DiffusionGymScheduler(sigmas=SIGMAS.tolist(), solver="ddim")
    with pytest.raises(ValueError, match="model_type"):
        DiffusionGymScheduler(model_type="flow")
    sched = DiffusionGymScheduler(sigmas=SIGMAS.tolist())
    with pytest.raises(ValueError, match="num_inference_steps=50 but the schedule has 6"):
        sched.set_timesteps(50)
    with pytest.raises(ValueError, match="no schedule"):
        DiffusionGymScheduler().set_timesteps()
    with pytest.raises(ValueError, match=r"\[n\] or \[n, B\]"):
        GuidanceController(sched, weights=[2.0, 2.0])


def test_sb3_guidance_policy_in_the_loop_equals_the_env_rollout():
    """A guidance policy (SB3 PPO on GuidanceVectorEnv, untrained: its actions vary with the
    state) steering the diffusers-style loop equals the env's own rollout under the policy."""
    env = GuidanceVectorEnv(4, "gmm-ring8", num_steps=4, solver="heun",
                            guidance_weights=[0.0, 1.0, 3.0, 6.0], gammas=[0.0])  # fmt: skip
    model = PPO(
        "MlpPolicy",
        SB3VecEnv(env),
        n_steps=8,
        batch_size=32,
        seed=0,
        policy_kwargs={"net_arch": [8]},
    )
    with torch.no_grad():  # a policy whose choice depends on the state, not a constant
        for p in model.policy.parameters():
            p.mul_(20.0)
    den = env.preset.denoiser
    labels = torch.tensor([0, 3, 5, 7])
    x_T = env.preset.prior_std * torch.randn(4, 2, generator=torch.Generator().manual_seed(7))
    ref = env.rollout(lambda obs, k: model.predict(obs.numpy(), deterministic=True)[0],
                      x_T=x_T.to(den.dtype), class_labels=labels)  # fmt: skip
    assert len(set(ref.guidance.reshape(-1).tolist())) > 1  # the policy varies w

    sched = DiffusionGymScheduler(sigmas=env.sigmas.tolist(), solver="heun", model_type="edm",
                                  prediction_type="sample")  # fmt: skip
    ctrl = GuidanceController.from_sb3(sched, model, env, labels)

    class Pipe:
        _guidance_scale = None

    pipe, x = Pipe(), x_T.to(den.dtype)
    pipe._guidance_scale = ctrl.first_weight(x)
    for i, t in enumerate(sched.timesteps):
        inp = sched.scale_model_input(x, t)
        null = torch.full_like(labels, -1)
        both = den(torch.cat([inp, inp]), t.to(den.dtype).expand(8), torch.cat([labels, null]))
        cond, uncond = both.chunk(2)
        x = sched.step(uncond + pipe._guidance_scale * (cond - uncond), t, x).prev_sample
        ctrl(pipe, i, t, {"latents": x})
    assert max_rel(x, ref.x0) <= 1e-5


def test_step_outside_the_plan_is_refused():
    sched = DiffusionGymScheduler(solver="euler")
    with pytest.raises(ValueError, match="call set_timesteps"):
        sched.step(torch.zeros(1, 2, 8, 8), 0, torch.zeros(1, 2, 8, 8))
    sched.set_timesteps(sigmas=[10.0, 1.0, 0.0])
    x = torch.ones(1, 2, 8, 8)
    for t in sched.timesteps:
        x = sched.step(torch.zeros_like(x), t, x).prev_sample
    with pytest.raises(ValueError, match="all 2 model evaluations"):
        sched.step(torch.zeros_like(x), 0, x)
    env = GuidanceVectorEnv(2, "gmm-ring8", num_steps=3, solver="heun", gammas=[0.0])
    with pytest.raises(ValueError, match="differs from the scheduler's"):
        GuidanceController.from_sb3(sched, None, env, torch.tensor([0, 1]))


def test_the_core_does_not_import_diffusers():
    code = ("import sys, diffusion_gym, diffusion_gym.envs, diffusion_gym.steps, "
            "diffusion_gym.integrations; assert 'diffusers' not in sys.modules")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
