"""examples/deploy_diffusers.py, the commands of docs/deploy.md (issue #21 items 2, 5): a
learned schedule and a learned guidance policy run in a diffusers-style loop and equal the
package's own sampler (steps.sample / the env's rollout)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")

from diffusers import UNet2DModel  # noqa: E402

from agents.cli import main as cli  # noqa: E402
from diffusion_gym import schedules  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location(
    "deploy_diffusers", ROOT / "examples/deploy_diffusers.py"
)
deploy = importlib.util.module_from_spec(spec)
sys.modules["deploy_diffusers"] = deploy
spec.loader.exec_module(deploy)


def run(args: list[str], out: Path) -> dict:
    assert deploy.main([*args, "--out", str(out)]) == 0
    return json.loads(out.read_text())


def test_schedule_on_the_preset_and_saved_scheduler(tmp_path):
    path = tmp_path / "schedule.json"
    schedules.save_schedule(path, schedules.karras(5, 0.002, 80.0), "dpmpp-2m", 5, "gmm-ring8",
                            sigma_min=0.002, sigma_max=80.0)  # fmt: skip
    res = run(["--schedule", str(path), "--guidance", "2.5", "--save-scheduler",
               str(tmp_path / "scheduler")], tmp_path / "out.json")  # fmt: skip
    assert res["solver"] == "dpmpp-2m" and res["max_abs_diff"] <= 1e-5 * res["scale"]
    cfg = json.loads((tmp_path / "scheduler" / "scheduler_config.json").read_text())
    assert cfg["_class_name"] == "DiffusionGymScheduler" and cfg["solver"] == "dpmpp-2m"


def test_schedule_moved_to_a_local_unet(tmp_path):
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(8, 8),
        down_block_types=("DownBlock2D",) * 2,
        up_block_types=("UpBlock2D",) * 2,
        norm_num_groups=4,
        add_attention=False,
    )
    unet.save_pretrained(tmp_path / "unet")  # fmt: skip
    path = tmp_path / "schedule.json"
    schedules.save_schedule(path, [80.0, 3.21, 0.32, 0.0], "heun", 3, None,
                            sigma_min=0.002, sigma_max=80.0)  # fmt: skip
    res = run(["--schedule", str(path), "--unet", str(tmp_path / "unet"), "--num-samples", "2"],
              tmp_path / "out.json")  # fmt: skip
    assert res["max_abs_diff"] <= 1e-5 * res["scale"]
    # DDPM's linear β: σ ∈ [0.0100, 157.4]; the middle σ moved as in issue #21 (≈ 8.4)
    assert res["sigmas"][0] == pytest.approx(157.4, rel=1e-3)
    assert res["sigmas"][1] == pytest.approx(8.37, rel=2e-3)


def test_guidance_policy_of_an_irl_run(tmp_path):
    out = tmp_path / "guide"
    tiny = ["rounds=2", "checkpoint_every=2", "env.num_envs=16", "algo.batch_size=64",
            "algo.n_epochs=1", "eval.num_samples=64", "eval.seeds=[0]", "eval.every=1",
            "eval.train_samples=32"]  # fmt: skip
    cfg = str(ROOT / "agents/configs/irl-ring8.yaml")
    assert cli(["train", cfg, "--out", str(out), "env.gammas=[0.0]", *tiny]) == 0
    res = run(["--policy", str(out)], tmp_path / "out.json")
    assert res["round"] == 2 and len(res["mean_w_per_step"]) == 4
    assert res["max_abs_diff"] <= 1e-5 * res["scale"]
