"""Run a diffusers video pipeline over a window of its timesteps, and resume exactly where it stopped.

The building block of inference-time search (``generate/search.py``): denoise a candidate for the
first ``k`` of ``T`` steps, look at the scheduler's predicted clean sample (x0), and later finish
the same candidate -- or a re-noised branch of it -- with the remaining ``T - k`` steps. The
pipeline itself (``CogVideoXPipeline``, ``CogVideoXImageToVideoPipeline``; any diffusers pipeline
with the same ``latents=`` / ``generator=`` / ``output_type="latent"`` interface) does the work;
for the duration of a call its scheduler is instrumented (instance attributes, removed afterwards):

* ``set_timesteps`` keeps only ``timesteps[start:stop]`` (and calls ``set_begin_index(start)`` on
  schedulers that index their sigmas by step, e.g. flow matching) -- the mechanism of diffusers'
  img2img pipelines. ``scheduler.num_inference_steps`` stays ``T``, so DDIM's previous-timestep
  arithmetic is unchanged.
* ``step`` is counted (NFE), records the x0 prediction and the timestep, and on a resumed segment
  restores the scheduler's hidden state: the multistep x0 of ``CogVideoXDPMScheduler``
  (``old_pred_original_sample``, ``timestep_back``) and the random-generator state that the
  stochastic DPM step draws from.

So ``run(0, k)`` then ``run(k, T, state)`` gives bit for bit the latents of one uninterrupted
``run(0, T)`` (tests/test_search.py checks this against plain generation for DDIM and DPM).

x0 prediction: ``pred_original_sample`` of the step output (CogVideoX DDIM/DPM: for v-prediction
``x0 = sqrt(a_t) x_t - sqrt(1 - a_t) v``); for a flow-matching scheduler (``x_t = (1 - s) x0 + s e``,
model output ``v = e - x0``) ``x0 = x_t - s v`` with ``s = sigmas[step]``.

NFE convention: one denoiser evaluation = one prediction for one latent at one step. With
classifier-free guidance the conditional and unconditional predictions run as one batch-2
transformer call and count as one NFE (transformer sample-evaluations = 2 x NFE).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["ResumeState", "PartialDenoiser", "SearchError", "prune_step", "flow_matching_x0"]


class SearchError(RuntimeError):
    """A search cannot go on: no candidate survived verification, or the scheduler is unsupported."""


def prune_step(num_inference_steps: int, prune_at: float) -> int:
    """Steps ``k`` run before pruning: ``round(prune_at * T)`` clamped to ``[1, T - 1]``.

    Raises:
        ValueError: ``prune_at`` not in (0, 1) or ``T < 2``.
    """
    t = int(num_inference_steps)
    if not 0.0 < float(prune_at) < 1.0:
        raise ValueError(f"prune_at is a fraction of the steps in (0, 1), got {prune_at}")
    if t < 2:
        raise ValueError(f"pruning needs at least 2 denoising steps, got {t}")
    return min(t - 1, max(1, int(round(float(prune_at) * t))))


def flow_matching_x0(sample: torch.Tensor, velocity: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """x0 of a rectified-flow / flow-matching model: ``x0 = x_t - sigma * v``.

    Args:
        sample: ``x_t = (1 - sigma) x0 + sigma * noise``, any shape.
        velocity: the model output ``v = noise - x0``, same shape.
        sigma: noise level in [0, 1] at this step.
    """
    return sample - sigma * velocity


@dataclass
class ResumeState:
    """Everything needed to continue a candidate exactly where a segment stopped.

    Attributes:
        step: steps done so far (the next step to run).
        latents: the partially denoised latents after ``step`` steps, the pipeline's latent layout
            (CogVideoX: ``[1, F_latent (+ CogVideoX1.5 padding), C, H/8, W/8]``), pipeline dtype.
        x0: the last step's predicted clean latents, same shape (float32 as the scheduler computed it).
        timestep: the last step's timestep (for the DPM scheduler's look-back).
        generator_state: state of the CPU ``torch.Generator`` the scheduler's stochastic steps draw
            from (unused by deterministic DDIM).
    """

    step: int
    latents: torch.Tensor
    x0: torch.Tensor | None
    timestep: Any
    generator_state: torch.Tensor


class _StepRecorder:
    def __init__(self):
        self.nfe = 0
        self.x0 = None
        self.timestep = None


def _x0_of_step(scheduler, out, args: dict) -> torch.Tensor:
    pred = getattr(out, "pred_original_sample", None)
    if pred is None and isinstance(out, tuple) and len(out) >= 2:
        pred = out[1]
    if pred is not None:
        return pred
    sigmas = getattr(scheduler, "sigmas", None)
    index = getattr(scheduler, "step_index", None)
    if sigmas is not None and index is not None:  # flow matching; step_index already advanced
        return flow_matching_x0(args["sample"], args["model_output"], sigmas[index - 1].to(args["sample"].device))
    raise SearchError(f"{type(scheduler).__name__}: no x0 prediction available (no pred_original_sample, no sigmas)")


@contextlib.contextmanager
def _instrumented_scheduler(scheduler, start: int, stop: int, recorder: _StepRecorder,
                            resume: ResumeState | None, step_generator: torch.Generator | None):
    if getattr(scheduler, "order", 1) != 1:
        raise SearchError(f"{type(scheduler).__name__} has order {scheduler.order}; only one-call-per-step schedulers are supported")
    orig_set, orig_step = scheduler.set_timesteps, scheduler.step
    signature = inspect.signature(orig_step)
    first = [True]

    @functools.wraps(orig_set)
    def set_timesteps(*args, **kwargs):
        orig_set(*args, **kwargs)
        scheduler.timesteps = scheduler.timesteps[start:stop]
        if start and hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(start)

    @functools.wraps(orig_step)
    def step(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        a = bound.arguments
        if first[0] and resume is not None and "old_pred_original_sample" in signature.parameters:
            if a.get("old_pred_original_sample") is None:  # DPM multistep memory of the stopped run
                a["old_pred_original_sample"] = resume.x0
                a["timestep_back"] = resume.timestep
        if step_generator is not None and "generator" in signature.parameters:
            a["generator"] = step_generator
        first[0] = False
        out = orig_step(*bound.args, **bound.kwargs)
        recorder.nfe += int(a["sample"].shape[0])
        recorder.x0 = _x0_of_step(scheduler, out, a)
        recorder.timestep = a["timestep"]
        return out

    scheduler.set_timesteps, scheduler.step = set_timesteps, step
    try:
        yield
    finally:
        del scheduler.set_timesteps, scheduler.step  # the class methods show through again


class PartialDenoiser:
    """Generate one video request in resumable segments, counting NFE and VAE decodes.

    Args:
        pipe: a loaded pipeline (``generate.pipeline.load_pipeline``).
        prompt, image, num_frames, height, width, num_inference_steps, guidance_scale,
        negative_prompt: as for ``generate.pipeline.generate_video`` (the prompt is encoded once here).
    Attributes:
        nfe: denoiser evaluations so far (see module doc for the convention).
        vae_decodes: latents decoded to frames so far.
    """

    def __init__(self, pipe, prompt: str, *, image=None, num_frames: int, height: int, width: int,
                 num_inference_steps: int = 50, guidance_scale: float = 6.0, negative_prompt: str | None = None):
        self.pipe = pipe
        self.image = image
        self.num_frames, self.height, self.width = int(num_frames), int(height), int(width)
        self.num_inference_steps = int(num_inference_steps)
        self.guidance_scale = float(guidance_scale)
        device = getattr(pipe, "videogpa_device", None) or pipe._execution_device
        with torch.inference_mode():
            self.prompt_embeds, self.negative_prompt_embeds = pipe.encode_prompt(
                prompt=prompt, negative_prompt=negative_prompt,
                do_classifier_free_guidance=self.guidance_scale > 1.0, num_videos_per_prompt=1, device=device,
            )  # fmt: skip
        self.nfe = 0
        self.vae_decodes = 0

    def run(self, seed: int, start: int = 0, stop: int | None = None, state: ResumeState | None = None) -> ResumeState:
        """Denoise steps ``[start, stop)`` of candidate ``seed``.

        Args:
            seed: the candidate's seed: its initial noise when ``start == 0`` (drawn by the pipeline
                from a CPU generator, exactly as ``generate_video``), and the I2V image-latent sample.
            start, stop: step window, ``0 <= start < stop <= T`` (``stop`` None: T).
            state: the :class:`ResumeState` of a segment that stopped at ``start`` (required iff
                ``start > 0``).
        Returns:
            :class:`ResumeState` after ``stop`` steps (``latents`` are the final latents when
            ``stop == T``; decode them with :meth:`decode`).
        Raises:
            ValueError: bad window or a missing/mismatched state.
            SearchError: unsupported scheduler.
        """
        total = self.num_inference_steps
        stop = total if stop is None else int(stop)
        if not 0 <= start < stop <= total:
            raise ValueError(f"step window [{start}, {stop}) outside [0, {total}]")
        if (start > 0) != (state is not None) or (state is not None and state.step != start):
            raise ValueError(f"resuming at step {start} needs the state of a segment that stopped there")
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        step_generator = None
        latents = None
        if state is not None:
            step_generator = torch.Generator(device="cpu")
            step_generator.set_state(state.generator_state)
            latents = state.latents / self.pipe.scheduler.init_noise_sigma  # the pipeline multiplies it back
        kwargs = dict(
            prompt_embeds=self.prompt_embeds, negative_prompt_embeds=self.negative_prompt_embeds,
            num_frames=self.num_frames, height=self.height, width=self.width,
            num_inference_steps=total, guidance_scale=self.guidance_scale,
            generator=generator, latents=latents, output_type="latent", return_dict=False,
        )  # fmt: skip
        if self.image is not None:
            kwargs["image"] = self.image
        recorder = _StepRecorder()
        with _instrumented_scheduler(self.pipe.scheduler, start, stop, recorder, state, step_generator), torch.inference_mode():
            out = self.pipe(**kwargs)[0]
        if recorder.nfe != stop - start:
            raise SearchError(f"expected {stop - start} scheduler steps, the pipeline ran {recorder.nfe}")
        self.nfe += recorder.nfe
        used = step_generator if step_generator is not None else generator
        return ResumeState(stop, out, recorder.x0, recorder.timestep, used.get_state())

    def _padding_latent_frames(self) -> int:
        # CogVideoX1.5 pads the latent frames to a multiple of patch_size_t at the front and drops
        # them before decoding (CogVideoXPipeline.__call__, "additional_frames").
        p = getattr(self.pipe.transformer.config, "patch_size_t", None)
        latent_frames = (self.num_frames - 1) // self.pipe.vae_scale_factor_temporal + 1
        return p - latent_frames % p if p and latent_frames % p else 0

    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """Latents (final, or an x0 prediction) -> uint8 frames ``[num_frames, H, W, 3]``, as the pipeline decodes.

        Same calls as the end of ``CogVideoXPipeline.__call__`` (drop padding frames,
        ``decode_latents``, ``video_processor.postprocess_video``), then the [0, 1] -> uint8
        rounding of ``generate_video``.
        """
        with torch.inference_mode():
            lat = latents[:, self._padding_latent_frames():].to(self.prompt_embeds.dtype)
            video = self.pipe.decode_latents(lat)
            frames = self.pipe.video_processor.postprocess_video(video=video, output_type="np")[0]
        self.vae_decodes += 1
        frames = np.asarray(frames, dtype=np.float32)
        return np.clip(np.round(frames * 255.0), 0, 255).astype(np.uint8)

    def renoise(self, state: ResumeState, seed: int) -> ResumeState:
        """A branch of ``state``: its x0 prediction re-noised to the current noise level with fresh noise.

        Level after ``state.step`` steps: for alpha-cumprod schedulers (CogVideoX DDIM/DPM, v- or
        epsilon-prediction) ``a = alphas_cumprod[t - T_train // T]`` of the last timestep ``t``
        (the level DDIM stepped to) and ``x = sqrt(a) x0 + sqrt(1 - a) e``; for flow matching
        ``s = sigmas[step]`` and ``x = (1 - s) x0 + s e``. ``e ~ N(0, I)`` from a CPU generator
        seeded with ``seed``; the same generator then feeds the branch's stochastic steps.

        Raises:
            SearchError: no x0 recorded or an unsupported scheduler.
        """
        from diffusers.utils.torch_utils import randn_tensor

        if state.x0 is None:
            raise SearchError("no x0 prediction to branch from")
        sched = self.pipe.scheduler
        x0 = state.x0.float()
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        noise = randn_tensor(tuple(x0.shape), generator=gen, device=torch.device("cpu"), dtype=torch.float32).to(x0.device)
        if hasattr(sched, "alphas_cumprod"):
            prev = int(state.timestep) - sched.config.num_train_timesteps // self.num_inference_steps
            a = sched.alphas_cumprod[prev] if prev >= 0 else sched.final_alpha_cumprod
            a = torch.as_tensor(a, dtype=torch.float32, device=x0.device)
            x = a.sqrt() * x0 + (1 - a).sqrt() * noise
        elif hasattr(sched, "sigmas"):
            s = sched.sigmas[state.step].to(device=x0.device, dtype=torch.float32)
            x = (1 - s) * x0 + s * noise
        else:
            raise SearchError(f"{type(sched).__name__}: don't know how to re-noise")
        return ResumeState(state.step, x.to(state.latents.dtype), state.x0, state.timestep, gen.get_state())
