"""A learned schedule, solver and guidance inside diffusers pipelines (optional extra).

``pip install -e ".[diffusers]"``; the core never imports this module.

- :class:`DiffusionGymScheduler`: a diffusers scheduler (``SchedulerMixin``/``ConfigMixin``:
  ``set_timesteps``, ``step``, ``scale_model_input``, ``save_pretrained``/``from_pretrained``)
  that runs a σ schedule (a ``schedule.json`` of :func:`diffusion_gym.schedules.save_schedule`
  or any σ list ending in 0) with any solver of :mod:`diffusion_gym.solvers`. The ODE math is
  the package's own solver objects, not a copy: every ``step`` call hands one model output to
  the solver, which re-runs the step of :func:`diffusion_gym.steps.step` on a copy of its
  multistep state; where the solver asks for one more evaluation than it has (Heun's
  correction), the step stops there and returns the point to evaluate as ``prev_sample``. The
  pipeline's loop over ``timesteps`` therefore runs one model call per entry, as with
  diffusers' own ``HeunDiscreteScheduler``, and reproduces :func:`diffusion_gym.steps.sample`
  (γ = 0) with the same σ's, solver and guidance weights.
- :class:`GuidanceController`: a ``callback_on_step_end`` that sets the pipeline's CFG weight
  before every model call from per-step weights (interval/ramp baselines, a Learn to Guide
  ω network) or a learned guidance policy (an SB3 model or any callable on the guidance env's
  observations).

Samples live in the EDM/VE scale x = x_0 + σ n (as diffusers' Euler/EDM schedulers):
``init_noise_sigma`` is σ_0 (x_T = σ_0 ε, :func:`~diffusion_gym.steps.sample`'s convention).
Model conventions (``model_type``, ``prediction_type``):

- ``vp`` (``epsilon``, ``v_prediction`` or ``sample``): model input x / sqrt(1 + σ²), timestep
  t(σ) through ᾱ_t, D as :class:`~diffusion_gym.denoisers.adapters.EpsilonDenoiser` computes it.
- ``edm`` with ``sample``: the model is an EDM denoiser D(x; σ) (``EDMPrecond``, the package's
  networks): input x, timestep σ, D = the output.
- ``edm`` with ``epsilon`` / ``v_prediction``: a raw EDM network F (diffusers'
  ``EDMEulerScheduler``): input c_in x, timestep ¼ ln σ, D = c_skip x ± c_out F.

t(σ) is fractional, linear in log σ between the training timesteps (Karras et al. 2022,
Table 1, VP column; diffusers' ``EulerDiscreteScheduler`` interpolates the same way).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .. import schedules as _schedules
from ..denoisers.adapters import PREDICTION_TYPES, EpsilonDenoiser, linear_beta_alphas_cumprod
from ..solvers import SolverState, get_solver

try:
    from diffusers.configuration_utils import ConfigMixin, register_to_config
    from diffusers.schedulers.scheduling_utils import SchedulerMixin
    from diffusers.utils import BaseOutput
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "diffusion_gym.integrations.diffusers needs the optional extra 'diffusers': "
        'pip install -e ".[diffusers]"'
    ) from e

__all__ = ["DiffusionGymScheduler", "DiffusionGymSchedulerOutput", "GuidanceController"]

MODEL_TYPES = ("vp", "edm")
BETA_SCHEDULES = ("linear", "scaled_linear")


@dataclass
class DiffusionGymSchedulerOutput(BaseOutput):
    """``prev_sample``: the next point to evaluate the model at (the next σ of the schedule,
    or Heun's corrector point); ``pred_original_sample``: D(x; σ) of the last completed step
    (None inside a step)."""

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor | None = None


class _NeedModel(Exception):
    """Raised inside a replayed solver step when it asks for a model output not given yet."""

    def __init__(self, x: torch.Tensor, sigma: torch.Tensor):
        super().__init__("one more model evaluation needed")
        self.x, self.sigma = x, sigma


class _Served:
    """``eps_net`` of the converter: returns the model output handed to ``step``."""

    def __init__(self):
        self.value: torch.Tensor | None = None

    def __call__(self, x_vp, t, labels):
        return self.value


def _alphas_cumprod(cfg) -> torch.Tensor:
    """ᾱ_t (float64) from diffusers' β config keys."""
    if cfg.trained_betas is not None:
        betas = torch.as_tensor(cfg.trained_betas, dtype=torch.float64)
    elif cfg.beta_schedule == "linear":  # DDPM (Ho et al. 2020)
        return linear_beta_alphas_cumprod(cfg.num_train_timesteps, cfg.beta_start, cfg.beta_end)
    elif cfg.beta_schedule == "scaled_linear":
        b0, b1, n = cfg.beta_start**0.5, cfg.beta_end**0.5, cfg.num_train_timesteps
        betas = torch.linspace(b0, b1, n, dtype=torch.float64) ** 2
    else:
        raise ValueError(
            f"beta_schedule must be one of {BETA_SCHEDULES}, got {cfg.beta_schedule!r}"
        )
    return torch.cumprod(1 - betas.double(), 0)


class DiffusionGymScheduler(SchedulerMixin, ConfigMixin):
    """Run a σ schedule with a solver of :mod:`diffusion_gym.solvers` in a diffusers pipeline.

    :param sigmas: the schedule, n+1 descending σ ending in 0 (EDM units); None: pass
        ``sigmas=`` to :meth:`set_timesteps`.
    :param solver: a name of :data:`diffusion_gym.steps.SOLVERS`.
    :param model_type: ``"vp"`` (a DDPM-style network on timesteps) or ``"edm"``.
    :param prediction_type: ``"epsilon"``, ``"v_prediction"`` or ``"sample"`` (see the table
        in the module doc).
    :param num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas: the VP
        model's training schedule (diffusers' keys; ``beta_schedule`` ``"linear"`` or
        ``"scaled_linear"``).
    :param sigma_data: EDM's σ_data (``model_type="edm"`` with F-prediction).
    :param lower_order_final: the multistep solvers' option
        (:class:`~diffusion_gym.solvers.SolverState`).
    :param sigma_min, sigma_max: metadata: the σ range of the denoiser the schedule was learned
        on (from ``schedule.json``), for :func:`agents.art.transfer_schedule`.
    """

    order = 1
    _compatibles: list = []

    @register_to_config
    def __init__(
        self,
        sigmas: list[float] | None = None,
        solver: str = "heun",
        model_type: str = "vp",
        prediction_type: str = "epsilon",
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: list[float] | None = None,
        sigma_data: float = 0.5,
        lower_order_final: bool = True,
        sigma_min: float | None = None,
        sigma_max: float | None = None,
    ):
        self._solver = get_solver(solver)
        if sigmas is not None:  # stored as plain floats (a tensor would not serialise)
            sigmas = _schedules.schedule_to_list(torch.as_tensor(sigmas, dtype=torch.float64))
            self.register_to_config(sigmas=sigmas)
        if model_type not in MODEL_TYPES:
            raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {model_type!r}")
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(
                f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}"
            )
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be > 0, got {sigma_data!r}")
        self._served = _Served()
        self._vp = None
        if model_type == "vp":
            self.alphas_cumprod = _alphas_cumprod(self.config).float()
            self._vp = EpsilonDenoiser(
                self._served, _alphas_cumprod(self.config), (1,),
                prediction_type=prediction_type, timesteps="interpolate",
            )  # fmt: skip
        # Heun spends 2 evaluations per step: diffusers' pipelines read order for progress.
        self.order = -(-self._solver.nfe(2) // 2)
        self.sigmas = self.timesteps = None
        self.num_inference_steps = None
        if sigmas is not None:
            self.set_timesteps(sigmas=sigmas)

    @classmethod
    def from_schedule(cls, path, **kwargs) -> DiffusionGymScheduler:
        """A scheduler for a ``schedule.json`` (:func:`~diffusion_gym.schedules.load_schedule`):
        its σ's, solver and recorded σ range; ``kwargs`` set the model's conventions."""
        rec = _schedules.load_schedule(path)
        kwargs.setdefault("solver", rec["solver"])
        for key in ("sigma_min", "sigma_max"):
            if rec.get(key) is not None:
                kwargs.setdefault(key, rec[key])
        return cls(sigmas=_schedules.schedule_to_list(rec["sigmas"]), **kwargs)

    # -- the evaluation plan ---------------------------------------------------------------

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        sigmas: Sequence[float] | torch.Tensor | None = None,
    ) -> None:
        """Set the schedule (``sigmas``, else the configured one) and the evaluation plan.

        :param num_inference_steps: must equal the schedule's number of steps n if given (a
            learned schedule is not silently resampled; use
            :func:`diffusion_gym.schedules.interpolate` for another n).
        """
        if sigmas is None:
            sigmas = self.config.sigmas
        if sigmas is None:
            raise ValueError("no schedule: pass sigmas= here or to the constructor")
        s = _schedules.validate(torch.as_tensor(sigmas, dtype=torch.float64).cpu())
        n = s.shape[0] - 1
        if num_inference_steps is not None and num_inference_steps != n:
            raise ValueError(
                f"num_inference_steps={num_inference_steps} but the schedule has {n} steps; "
                "pass num_inference_steps=None or resample the schedule "
                "(diffusion_gym.schedules.interpolate)"
            )
        self.num_inference_steps, self._sigmas64 = n, s
        self.sigmas = s.float().to(device)
        self._plan = self._dry_run(s)
        self._eval_sigmas = torch.tensor([sig for _, sig in self._plan], dtype=torch.float32)
        self.timesteps = self._timestep_of(self._eval_sigmas).to(device)
        self._begin()

    def _dry_run(self, s: torch.Tensor) -> list[tuple[int, float]]:
        """``(step k, σ)`` of every model evaluation of the schedule with this solver: the
        solver is run on a dummy model (which σ's it asks for does not depend on the values)."""
        plan: list[tuple[int, float]] = []
        x = torch.zeros(1)
        state = SolverState(len(s) - 1, lower_order_final=self.config.lower_order_final)
        for k in range(len(s) - 1):

            def dummy(x_in, t, k=k):
                plan.append((k, float(t)))
                return torch.zeros_like(x_in)

            t_cur, t_next = (torch.tensor(float(v)) for v in (s[k], s[k + 1]))
            x, _ = self._solver.advance(dummy, x, t_cur, t_next, state)
        return plan

    def _timestep_of(self, sigma: torch.Tensor) -> torch.Tensor:
        """The model's timestep for σ (see the module doc)."""
        if self._vp is not None:
            return self._vp.timestep(sigma).float()
        if self.config.prediction_type == "sample":
            return sigma.float()
        return (0.25 * sigma.double().log()).float()

    def _begin(self) -> None:
        """Reset the per-trajectory state (called by :meth:`set_timesteps`)."""
        self._eval_index = 0
        self._outputs: list[torch.Tensor] = []
        self._x_start: torch.Tensor | None = None
        multistep = self._solver.multistep
        n, lof = self.num_inference_steps, self.config.lower_order_final
        self._state = SolverState(n, lower_order_final=lof) if multistep else None

    @property
    def init_noise_sigma(self) -> float:
        """σ_0: x_T = σ_0 ε (the package's and diffusers' EDM schedulers' convention)."""
        return float(self._sigmas64[0]) if self.sigmas is not None else 1.0

    @property
    def step_index(self) -> int:
        """Index of the next model evaluation in :attr:`timesteps`."""
        return self._eval_index

    @property
    def eval_steps(self) -> list[int]:
        """The schedule step k (0..n−1) of every entry of :attr:`timesteps`."""
        return [k for k, _ in self._plan]

    @property
    def eval_sigmas(self) -> torch.Tensor:
        """σ of every entry of :attr:`timesteps` (float32)."""
        return self._eval_sigmas

    def _current_sigma(self) -> float:
        if self.sigmas is None:
            raise ValueError("call set_timesteps before scale_model_input/step")
        if self._eval_index >= len(self._plan):
            raise ValueError(
                f"all {len(self._plan)} model evaluations of the schedule are done; call "
                "set_timesteps again for a new trajectory"
            )
        return self._plan[self._eval_index][1]

    # -- the pipeline calls ----------------------------------------------------------------

    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        """The model's input for ``sample`` at the current σ (see the module doc)."""
        sigma = self._current_sigma()
        s = torch.tensor(sigma, dtype=sample.dtype).double()
        if self._vp is not None:  # x_VP = x / sqrt(1 + σ²), as EpsilonDenoiser computes it
            return (sample.double() * (1 + s**2).rsqrt()).to(sample.dtype)
        if self.config.prediction_type == "sample":
            return sample
        c_in = (s**2 + self.config.sigma_data**2).rsqrt()
        return (sample.double() * c_in).to(sample.dtype)

    def _denoised(self, out: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """D(x; σ) from the model output ``out`` at (x, σ = t ``[B]``)."""
        if self._vp is not None:
            self._served.value = out
            return self._vp.denoise(x, t, None)
        if self.config.prediction_type == "sample":
            return out
        # EDM preconditioning (Karras et al. 2022, Table 1; diffusers' EDMEulerScheduler).
        s = t.double().reshape(-1, *([1] * (x.ndim - 1)))
        sd = self.config.sigma_data
        c_skip = sd**2 / (s**2 + sd**2)
        c_out = s * sd / (s**2 + sd**2).sqrt()
        c_out = -c_out if self.config.prediction_type == "v_prediction" else c_out
        return (c_skip * x.double() + c_out * out.double()).to(x.dtype)

    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> DiffusionGymSchedulerOutput | tuple:
        """Hand one model output (at the current entry of :attr:`timesteps`) to the solver.

        Returns the point of the next model evaluation: the sample at the next σ when the
        solver step is complete, else the solver's intermediate point (Heun's corrector).
        """
        self._current_sigma()
        if self._x_start is None:  # the first evaluation of a solver step
            self._x_start = sample
        self._outputs.append(model_output)
        k = self._plan[self._eval_index][0]
        x = self._x_start
        state = self._state.copy() if self._state is not None else None
        served = iter(self._outputs)

        def D(x_in, t):  # noqa: N802 - the paper's name; as steps.step calls the model
            out = next(served, None)
            if out is None:
                raise _NeedModel(x_in, t)
            return self._denoised(out, x_in, t.reshape(-1).expand(x.shape[0]))

        # σ's as steps.step passes them: 0-dim tensors in the sample's dtype.
        t_cur, t_next = (
            torch.as_tensor(float(v), dtype=x.dtype, device=x.device)
            for v in self._sigmas64[k : k + 2]
        )
        self._eval_index += 1
        try:
            x_next, denoised = self._solver.advance(D, x, t_cur, t_next, state)
        except _NeedModel as need:  # the solver's next evaluation point
            return self._out(need.x.expand_as(x), None, return_dict)
        self._state, self._x_start, self._outputs = state, None, []
        return self._out(x_next, denoised, return_dict)

    @staticmethod
    def _out(x, denoised, return_dict):
        if not return_dict:
            return (x,)
        return DiffusionGymSchedulerOutput(prev_sample=x, pred_original_sample=denoised)

    def add_noise(
        self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor:
        """x = x_0 + σ n at the σ of ``timesteps`` (entries of :attr:`timesteps`)."""
        idx = [int((self.timesteps.cpu() - float(t)).abs().argmin()) for t in timesteps.reshape(-1)]
        sigma = self._eval_sigmas[idx].to(original_samples)
        return original_samples + sigma.reshape(-1, *([1] * (noise.ndim - 1))) * noise

    def __len__(self) -> int:
        return self.config.num_train_timesteps


class GuidanceController:
    """``callback_on_step_end`` that sets the CFG weight of every model evaluation.

    Weights are per schedule step (the convention of :func:`diffusion_gym.steps.sample`'s
    ``guidance``): every model evaluation of step k (two for Heun) uses w_k. Give either

    - ``weights``: ``[n]`` floats or an ``[n]``/``[n, B]`` tensor (e.g.
      ``baselines.guidance.interval_weights`` / ``ramp_weights``, or :meth:`from_omega`), or
    - ``policy``: ``policy(x, k) -> w`` called at the start of every step with the current
      sample ``x [B, ...]`` at σ_k; :meth:`from_sb3` builds one from an SB3 model trained on
      the guidance env.

    Use: pass ``guidance_scale=controller.first_weight(latents)`` (or set it yourself) and
    ``callback_on_step_end=controller`` to the pipeline; the controller writes the next weight
    into ``pipe._guidance_scale`` (the attribute diffusers' pipelines read as
    ``guidance_scale``; a ``[B]`` weight is written as ``[B, 1, 1, 1]``).

    :param scheduler: the pipeline's :class:`DiffusionGymScheduler` (after ``set_timesteps``).
    """

    def __init__(
        self,
        scheduler: DiffusionGymScheduler,
        weights: Sequence[float] | torch.Tensor | None = None,
        policy: Callable[[torch.Tensor, int], float | torch.Tensor] | None = None,
    ):
        if not isinstance(scheduler, DiffusionGymScheduler) or scheduler.sigmas is None:
            raise TypeError("scheduler must be a DiffusionGymScheduler after set_timesteps")
        if (weights is None) == (policy is None):
            raise ValueError("give exactly one of weights= (per step) or policy= (callable)")
        self.scheduler, self.policy = scheduler, policy
        self.weights = None
        if weights is not None:
            w = torch.as_tensor(weights, dtype=torch.float64)
            n = scheduler.num_inference_steps
            if w.ndim not in (1, 2) or w.shape[0] != n or not bool(torch.isfinite(w).all()):
                raise ValueError(
                    f"weights must be finite, [n] or [n, B] with n = {n} steps, "
                    f"got shape {tuple(w.shape)}"
                )
            self.weights = w
        self._current: float | torch.Tensor | None = None

    @classmethod
    def from_omega(
        cls, scheduler: DiffusionGymScheduler, omega: Callable, class_labels: torch.Tensor
    ) -> GuidanceController:
        """Learn to Guide (Galashov et al. 2025): w_k(c) = 1 + ω(c, σ_{k+1}, σ_k) per sample,
        ``omega(c [B], s [B], t [B]) -> [B]`` (``baselines.guidance.GuidanceNet``)."""
        s = scheduler._sigmas64
        n, b = s.shape[0] - 1, class_labels.shape[0]
        with torch.no_grad():
            t_, s_ = s[:-1].repeat_interleave(b), s[1:].repeat_interleave(b)
            w = 1 + omega(class_labels.cpu().repeat(n), s_, t_).reshape(n, b)
        return cls(scheduler, weights=w.double())

    @classmethod
    def from_sb3(
        cls, scheduler: DiffusionGymScheduler, model, env, class_labels: torch.Tensor | None
    ) -> GuidanceController:
        """A guidance policy trained on :class:`~diffusion_gym.envs.GuidanceVectorEnv`:
        at step k its action for ``env.encode_obs(x, k, class_labels)`` (deterministic)
        gives the weight. ``env`` must have the scheduler's schedule; the policy's churn must
        be γ = 0 (a diffusers scheduler step is deterministic here)."""
        venv = getattr(env, "unwrapped", env)
        env_s = venv.sigmas.double().cpu()
        if env_s.shape != scheduler._sigmas64.shape or not torch.allclose(
            env_s, scheduler._sigmas64, rtol=1e-6
        ):
            raise ValueError(
                f"the env's schedule {env_s.tolist()} differs from the scheduler's "
                f"{scheduler._sigmas64.tolist()}"
            )
        table = venv.action_table

        def policy(x, k):
            obs = venv.encode_obs(x, k, class_labels).cpu().numpy()
            action, _ = model.predict(obs, deterministic=True)
            wi, gi = table.decode(action, x.shape[0])
            if bool((venv.gammas[gi] != 0).any()):
                raise ValueError("the policy chose churn gamma > 0; the scheduler runs gamma = 0")
            return torch.as_tensor(venv.guidance_weights[wi], dtype=torch.float64)

        return cls(scheduler, policy=policy)

    def weight(self, eval_index: int, latents: torch.Tensor) -> float | torch.Tensor:
        """The CFG weight of model evaluation ``eval_index`` (``latents``: x before it)."""
        k = self.scheduler.eval_steps[eval_index]
        if self.weights is not None:
            w = self.weights[k]
        elif eval_index == 0 or self.scheduler.eval_steps[eval_index - 1] != k:
            w = torch.as_tensor(self.policy(latents, k), dtype=torch.float64)
        else:
            w = self._current  # Heun's second evaluation: the same step
        self._current = w
        return w if w.ndim else float(w)

    def first_weight(self, latents: torch.Tensor) -> float | torch.Tensor:
        """The weight of the first evaluation (pass it as the pipeline's ``guidance_scale``)."""
        return _shaped(self.weight(0, latents), latents)

    def __call__(self, pipe, i: int, t, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        """``callback_on_step_end(pipe, i, t, {"latents": ...})``: sets the next weight."""
        if i + 1 < len(self.scheduler.eval_steps):
            latents = callback_kwargs["latents"]
            pipe._guidance_scale = _shaped(self.weight(i + 1, latents), latents)
        return callback_kwargs


def _shaped(w: float | torch.Tensor, x: torch.Tensor) -> float | torch.Tensor:
    """A ``[B]`` weight as ``[B, 1, ...]`` to broadcast against ε (scalars unchanged)."""
    if isinstance(w, float):
        return w
    return w.to(x.device, x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
