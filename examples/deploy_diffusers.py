"""Run what `diffusion-gym train` learned inside a diffusers-style denoising loop, and check it.

Two modes (docs/deploy.md):

    python examples/deploy_diffusers.py --schedule runs/art/schedule.json --out runs/deploy.json
    python examples/deploy_diffusers.py --policy runs/guide --out runs/deploy-guide.json

``--schedule``: a ``schedule.json`` runs in :class:`DiffusionGymScheduler` (its solver, its σ's)
on the denoiser of its preset, in the loop diffusers' pipelines run (``scale_model_input``,
model call, ``scheduler.step``, CFG as ``uncond + w (cond - uncond)``), and is compared with
``steps.sample`` on the same x_T. With ``--unet DIR`` (a local ``UNet2DModel.save_pretrained``
directory, ε-prediction, DDPM's linear β) the schedule is first moved to that model's σ range
(``agents.art.transfer_schedule``, from the range recorded in the file) and run on the UNet.
``--save-scheduler DIR`` writes the scheduler with ``save_pretrained`` (a pipeline's
``scheduler/`` folder).

``--policy``: an IRL run directory (``config.yaml``, ``checkpoints/round_<r>/policy.zip``,
trained with ``env.gammas=[0]``): its guidance policy sets the CFG weight of every step
through :class:`GuidanceController` (``callback_on_step_end``), compared with the env's own
rollout under the policy.

Writes ``--out`` JSON with the max |difference| and the result's scale.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from stable_baselines3 import PPO

from agents.art import transfer_schedule
from agents.irl.trainer import make_env
from agents.train import load_config
from diffusion_gym import presets, schedules, steps
from diffusion_gym.denoisers.adapters import DiffusersUNetDenoiser
from diffusion_gym.integrations.diffusers import DiffusionGymScheduler, GuidanceController
from diffusion_gym.io import atomic_write_json, complete_dirs


@dataclass
class Args:
    schedule: str | None = None
    """schedule.json of `diffusion-gym train` (ART) or of the shipped schedules."""
    policy: str | None = None
    """an IRL run directory (config.yaml + checkpoints/round_<r>/policy.zip)."""
    unet: str | None = None
    """optional local UNet2DModel directory (ε-prediction) to run the schedule on."""
    guidance: float = 1.0
    """constant CFG weight of the --schedule run (class-conditional presets)."""
    num_samples: int = 16
    seed: int = 0
    save_scheduler: str | None = None
    out: str = "runs/deploy.json"


class Pipe:
    """What a pipeline's ``callback_on_step_end`` receives: it reads ``_guidance_scale``."""

    def __init__(self, guidance_scale):
        self._guidance_scale = guidance_scale


def denoising_loop(model, scheduler, x_T, labels, pipe, callback=None):  # noqa: N803
    """diffusers' loop: model(scale_model_input(x), t), CFG on [cond, uncond], step."""
    x = x_T
    for i, t in enumerate(scheduler.timesteps):
        inp = scheduler.scale_model_input(x, t)
        if labels is None:
            out = model(inp, t)
        else:
            both = model(torch.cat([inp, inp]), t, torch.cat([labels, torch.full_like(labels, -1)]))
            cond, uncond = both.chunk(2)
            out = uncond + pipe._guidance_scale * (cond - uncond)
        x = scheduler.step(out, t, x).prev_sample
        if callback is not None:
            callback(pipe, i, t, {"latents": x})
    return x


def run_schedule(a: Args) -> dict:
    rec = schedules.load_schedule(a.schedule)
    g = torch.Generator().manual_seed(a.seed)
    if a.unet is None:  # the preset's own (EDM) denoiser: model output = D(x; σ)
        den, sig = presets.make(rec["preset"]).denoiser, rec["sigmas"]
        sched = DiffusionGymScheduler.from_schedule(
            a.schedule, model_type="edm", prediction_type="sample"
        )

        def model(inp, t, labels=None):
            return den(inp, t.to(den.dtype).expand(inp.shape[0]), labels)

    else:  # a diffusers UNet (VP, ε): move the schedule to its σ range first
        den = DiffusersUNetDenoiser.from_pretrained(a.unet, timesteps="interpolate")
        sig = transfer_schedule(rec, None, (den.sigma_min, den.sigma_max))
        sched = DiffusionGymScheduler(sigmas=sig.tolist(), solver=rec["solver"])

        def model(inp, t, labels=None):
            null = den.null_label
            lab = None if labels is None else torch.where(labels < 0, null, labels)
            return den.unet(inp, t, class_labels=lab).sample

    sched.set_timesteps()
    labels = None
    if den.num_classes:
        labels = torch.randint(0, den.num_classes, (a.num_samples,), generator=g)
    eps = torch.randn(a.num_samples, *den.shape, generator=g, dtype=den.dtype)
    x_T = eps * sched.init_noise_sigma  # x_T = σ_0 ε
    with torch.no_grad():
        x = denoising_loop(model, sched, x_T, labels, Pipe(a.guidance))
        ref = steps.sample(den, x_T, sig, class_labels=labels,
                           guidance=a.guidance, solver=sched.config.solver)  # fmt: skip
    if a.save_scheduler:
        sched.save_pretrained(a.save_scheduler)
    return {
        "mode": "schedule",
        "solver": sched.config.solver,
        "sigmas": sched.sigmas.tolist(),
        "max_abs_diff": float((x - ref).abs().max()),
        "scale": float(ref.abs().max()),
    }


def run_policy(a: Args) -> dict:
    run = Path(a.policy)
    _, cfg = load_config(run / "config.yaml")
    rounds = complete_dirs(run / "checkpoints", "round_")
    if not rounds:
        raise FileNotFoundError(f"no complete checkpoint under {run / 'checkpoints'}")
    model = PPO.load(rounds[-1][1] / "policy.zip", device="cpu")
    env = make_env(cfg.env, num_envs=a.num_samples)
    den = env.preset.denoiser
    g = torch.Generator().manual_seed(a.seed)
    labels = torch.randint(0, den.num_classes, (a.num_samples,), generator=g)
    x_T = env.preset.prior_std * torch.randn(a.num_samples, *den.shape, generator=g)
    x_T = x_T.to(den.dtype)
    sched = DiffusionGymScheduler(sigmas=env.sigmas.tolist(), solver=env.solver,
                                  model_type="edm", prediction_type="sample")  # fmt: skip
    ctrl = GuidanceController.from_sb3(sched, model, env, labels)
    pipe = Pipe(ctrl.first_weight(x_T))

    def unet(inp, t, lab):
        return den(inp, t.to(den.dtype).expand(inp.shape[0]), lab)

    with torch.no_grad():
        x = denoising_loop(unet, sched, x_T, labels, pipe, callback=ctrl)
    ref = env.rollout(lambda obs, k: model.predict(obs.numpy(), deterministic=True)[0],
                      x_T=x_T, class_labels=labels)  # fmt: skip
    return {
        "mode": "policy",
        "solver": env.solver,
        "round": rounds[-1][0],
        "mean_w_per_step": ref.guidance.mean(1).tolist(),
        "max_abs_diff": float((x - ref.x0).abs().max()),
        "scale": float(ref.x0.abs().max()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for f in dataclasses.fields(Args):
        kind = str if f.default is None else type(f.default)
        p.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=f.default)
    a = Args(**vars(p.parse_args(argv)))
    if (a.schedule is None) == (a.policy is None):
        p.error("give exactly one of --schedule or --policy")
    res = run_schedule(a) if a.schedule else run_policy(a)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(a.out, res)
    print(json.dumps({k: v for k, v in res.items() if k != "sigmas"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
