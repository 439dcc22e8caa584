"""The CogVideoX encoder of :func:`train_dpo.encode.encode_dataset` (the :class:`train_dpo.encode.Encoder`
of CogVideoX-5B, -5B-I2V and 1.5-5B): VAE latents per video, T5 embeddings and I2V image latents per group.

Per video (``encode_video_latents``): ``NUM_FRAMES`` frames spread uniformly over the whole video
(``utils.video_utils.load_frames``: first and last frame included, centre crop to the model's
aspect ratio, bicubic resize to ``HEIGHT x WIDTH``) -> ``x / 255 * 2 - 1`` (the pipelines'
normalisation, range [-1, 1]) -> ``vae.encode(video).latent_dist.sample(generator)`` ->
``* vae.config.scaling_factor`` (as the CogVideoX fine-tuning scripts and diffusers'
``examples/cogvideo`` do; the pipelines' ``decode_latents`` divides by it) -> ``[F, C, h, w]``
with ``F = (NUM_FRAMES - 1) // 4 + 1`` (CogVideoX-5B: 49 frames -> 13 x 16 x 60 x 90;
CogVideoX1.5: 81 -> 21 x 16 x 96 x 170), saved as ``{"latents": ...}`` in a safetensors file.
The sampling generator is seeded per video from ``seed`` and the video path (crc32), so results
do not depend on the order or on resumption.

Per group (``encode_group_condition``): ``prompt_embeds [226, D]`` from the pipeline's own
``encode_prompt(prompt, do_classifier_free_guidance=False, max_sequence_length=226)``; for I2V
models also ``image_latents [F', C, h, w]`` computed exactly like
``CogVideoXImageToVideoPipeline.__call__`` + ``prepare_latents`` (diffusers 0.3x-0.4x): image
loaded like ``generate/i2v_inference.py`` does (centre crop to the aspect, bicubic resize) and
preprocessed by ``pipe.video_processor`` at ``HEIGHT x WIDTH``, encoded (``latent_dist.sample``),
multiplied by ``scaling_factor`` (or by ``1 / scaling_factor`` when
``vae.config.invert_scale_latents``), zero-padded to the latent frame count (which, for
``patch_size_t`` models, is first rounded up to a multiple of ``patch_size_t`` as ``__call__``
does), and, for ``patch_size_t`` models, ``size(1) % patch_size_t`` copies of the first frame
prepended. The pipeline draws the image sample from the generator before the initial noise; the
encoder uses a generator seeded with ``seed`` for it, so ``pipe(..., generator=manual_seed(seed))``
sees the same image latents.
"""

from __future__ import annotations

import os
import zlib

import torch

from train_dpo.encode import EncodeConfig, resolve_device_dtype, video_frames_to_tensor
from utils.device import compute_dtype, resolve_device
from utils.model_facts import requires_image_latents
from utils.vae_tiling import enable_vae_memory_savers, encode_latent_dist

__all__ = [
    "CogVideoXEncoder",
    "encode_group_condition",
    "encode_prompt_embeds",
    "encode_video_latents",
    "is_i2v_pipeline",
    "load_encode_pipeline",
    "prepare_image_latents",
]


def load_encode_pipeline(
    base_model: str | os.PathLike,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    vae_slicing: bool = True,
    vae_tiling: bool = True,
):
    """Load the model's diffusers pipeline without its transformer (tokenizer, T5, VAE, scheduler).

    The pipeline class (``CogVideoXPipeline`` or ``CogVideoXImageToVideoPipeline``) comes from the
    folder's ``model_index.json``; the transformer's config is read (not its weights) and kept as
    ``pipe.transformer_config`` (``patch_size_t``, ``in_channels``...).

    Returns:
        The pipeline in eval mode on ``device`` in ``dtype`` (defaults: ``utils.device``).
    """
    from diffusers import CogVideoXTransformer3DModel, DiffusionPipeline

    from utils.hub import check_hub_model

    check_hub_model(base_model, ("model_index.json",), "CogVideoX model", "--base_model")
    dev = resolve_device(device)
    if dtype is None:
        dtype = compute_dtype(dev)
    pipe = DiffusionPipeline.from_pretrained(str(base_model), transformer=None, torch_dtype=dtype)
    pipe.to(dev)
    pipe.transformer_config = CogVideoXTransformer3DModel.load_config(
        str(base_model), subfolder="transformer"
    )
    enable_vae_memory_savers(pipe.vae, slicing=vae_slicing, tiling=vae_tiling)
    for m in (pipe.vae, pipe.text_encoder):
        m.eval().requires_grad_(False)
    return pipe


def is_i2v_pipeline(pipe) -> bool:
    """True when the model needs image-conditioning latents (``utils.model_facts.requires_image_latents``
    of ``pipe.transformer_config``, or of ``pipe.transformer.config`` for a full pipeline)."""
    cfg = getattr(pipe, "transformer_config", None)
    if cfg is None:
        cfg = pipe.transformer.config
    return requires_image_latents(cfg)


@torch.no_grad()
def encode_video_latents(vae, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """VAE-encode a video and scale it like the CogVideoX training scripts.

    Args:
        vae: ``AutoencoderKLCogVideoX``.
        video: ``[1, 3, T, H, W]`` in [-1, 1] (``T = 4k + 1``), any float dtype (cast to the VAE's).
        generator: for ``latent_dist.sample``.

    Returns:
        ``[F, C, h, w]`` in the VAE's dtype, ``F = (T - 1) // 4 + 1``, ``h, w = H/8, W/8``,
        multiplied by ``vae.config.scaling_factor``.
    """
    if video.dim() != 5 or video.shape[0] != 1:
        raise ValueError(f"video must be [1, 3, T, H, W], got {tuple(video.shape)}")
    video = video.to(device=vae.device, dtype=vae.dtype)
    latents = encode_latent_dist(vae, video).sample(generator=generator) * vae.config.scaling_factor
    return latents[0].permute(1, 0, 2, 3).contiguous()  # [C, F, h, w] -> [F, C, h, w]


@torch.no_grad()
def encode_prompt_embeds(pipe, prompt: str, max_sequence_length: int = 226) -> torch.Tensor:
    """T5 prompt embeddings through the pipeline's own ``encode_prompt`` (no CFG): ``[226, D]``."""
    embeds, _ = pipe.encode_prompt(
        prompt=prompt,
        negative_prompt=None,
        do_classifier_free_guidance=False,
        num_videos_per_prompt=1,
        max_sequence_length=max_sequence_length,
        device=pipe.vae.device,
        dtype=pipe.text_encoder.dtype,
    )
    return embeds[0]


@torch.no_grad()
def prepare_image_latents(
    pipe,
    image,
    num_frames: int,
    height: int,
    width: int,
    generator: torch.Generator | None = None,
    patch_size_t: int | None = None,
) -> torch.Tensor:
    """Image-conditioning latents exactly as ``CogVideoXImageToVideoPipeline`` builds them.

    Mirrors ``__call__`` (frame-count rounding for ``patch_size_t``, ``video_processor.preprocess``)
    and ``prepare_latents`` (encode, ``retrieve_latents`` = ``latent_dist.sample(generator)``,
    scaling or inverse scaling, zero padding, first-frame padding).

    Args:
        pipe: a CogVideoX pipeline (its ``vae`` and ``video_processor`` are used).
        image: a path (loaded with ``generate.pipeline.load_image``: centre crop + resize, as the
            candidate generator and ``generate/i2v_inference.py`` load first frames) or a PIL
            image / tensor, passed to ``video_processor.preprocess`` as the pipeline does.
        num_frames: pixel frames of the video (e.g. 49).
        height, width: model resolution in pixels.
        generator: the generator the pipeline would get (its first draw is the image sample).
        patch_size_t: transformer ``patch_size_t`` (None: read ``pipe.transformer_config`` or
            ``pipe.transformer.config``).

    Returns:
        ``[F', C, h, w]`` in the VAE's dtype; ``F'`` = latent frames rounded up to a multiple
        of ``patch_size_t``; frame 0 holds the image latent, the rest zeros.
    """
    if patch_size_t is None:
        cfg = getattr(pipe, "transformer_config", None)
        if cfg is None and getattr(pipe, "transformer", None) is not None:
            cfg = pipe.transformer.config
        patch_size_t = (cfg or {}).get("patch_size_t")
    if isinstance(image, (str, os.PathLike)):
        from generate.pipeline import load_image

        image = load_image(image, height, width)
    vae = pipe.vae
    tc = pipe.vae_scale_factor_temporal
    sf = pipe.vae_scale_factor_spatial
    # __call__: round the latent frame count up to a multiple of patch_size_t (CogVideoX 1.5)
    latent_frames = (num_frames - 1) // tc + 1
    if patch_size_t is not None and latent_frames % patch_size_t != 0:
        num_frames += (patch_size_t - latent_frames % patch_size_t) * tc
    dtype = pipe.text_encoder.dtype if getattr(pipe, "text_encoder", None) is not None else vae.dtype
    img = pipe.video_processor.preprocess(image, height=height, width=width).to(vae.device, dtype=dtype)
    # prepare_latents
    n_lat = (num_frames - 1) // tc + 1
    img = img.unsqueeze(2)  # [B, C, 1, H, W]
    image_latents = torch.cat([encode_latent_dist(vae, x.unsqueeze(0)).sample(generator) for x in img], dim=0)
    image_latents = image_latents.to(dtype).permute(0, 2, 1, 3, 4)  # [B, F, C, h, w]
    if not vae.config.invert_scale_latents:
        image_latents = vae.config.scaling_factor * image_latents
    else:
        image_latents = 1 / vae.config.scaling_factor * image_latents
    pad = torch.zeros(
        (image_latents.shape[0], n_lat - 1, image_latents.shape[2], height // sf, width // sf),
        device=image_latents.device,
        dtype=dtype,
    )
    image_latents = torch.cat([image_latents, pad], dim=1)
    if patch_size_t is not None:
        first = image_latents[:, : image_latents.size(1) % patch_size_t, ...]
        image_latents = torch.cat([first, image_latents], dim=1)
    return image_latents[0].contiguous()


def encode_group_condition(
    pipe,
    prompt: str,
    image=None,
    num_frames: int = 49,
    height: int = 480,
    width: int = 720,
    seed: int = 0,
    max_sequence_length: int = 226,
) -> dict[str, torch.Tensor]:
    """``{"prompt_embeds": [226, D]}`` plus ``"image_latents"`` (see :func:`prepare_image_latents`)
    when ``image`` is given. The image sample uses a CPU ``torch.Generator().manual_seed(seed)`` on
    every device (a CUDA generator draws other numbers), so the latents equal those of
    ``pipe(image=..., generator=torch.Generator().manual_seed(seed))``, the CPU generator that
    ``generate.pipeline.generate_video`` (candidate generation, inference) passes."""
    out = {"prompt_embeds": encode_prompt_embeds(pipe, prompt, max_sequence_length)}
    if image is not None:
        gen = torch.Generator().manual_seed(int(seed))
        out["image_latents"] = prepare_image_latents(pipe, image, num_frames, height, width, gen)
    return out


def _video_seed(seed: int, key: str) -> int:
    return (int(seed) * 1_000_003 + zlib.crc32(key.encode("utf-8"))) % (2**63 - 1)


class CogVideoXEncoder:
    """The :class:`train_dpo.encode.Encoder` of a CogVideoX pipeline: ``image_mode`` ``"required"``
    for I2V models (``is_i2v_pipeline``), else ``"none"``; ``meta`` = VAE scaling factor and tiling."""

    def __init__(self, pipe, cfg: EncodeConfig):
        self.pipe, self.cfg = pipe, cfg
        self.image_mode = "required" if is_i2v_pipeline(pipe) else "none"
        self.meta = {
            "scaling_factor": pipe.vae.config.scaling_factor,
            "vae_tiling": bool(getattr(pipe.vae, "use_tiling", False)),
        }

    @classmethod
    def from_config(cls, cfg: EncodeConfig, pipe=None) -> "CogVideoXEncoder":
        """Bind to ``pipe``, or load ``cfg.base_model`` (:func:`load_encode_pipeline`) when None."""
        if pipe is None:
            dev, dt = resolve_device_dtype(cfg.device, cfg.dtype)
            pipe = load_encode_pipeline(cfg.base_model, dev, dt, cfg.vae_slicing, cfg.vae_tiling)
        return cls(pipe, cfg)

    def encode_condition(self, prompt: str, image) -> dict[str, torch.Tensor]:
        """:func:`encode_group_condition` at the run's frames, size, seed and sequence length."""
        c = self.cfg
        return encode_group_condition(self.pipe, prompt, image, c.num_frames, c.height, c.width,
                                      seed=c.seed, max_sequence_length=c.max_sequence_length)

    def encode_video(self, frames, key: str) -> torch.Tensor:
        """:func:`encode_video_latents` of ``frames``; posterior sample seeded from the seed and ``key``."""
        gen = torch.Generator(device=self.pipe.vae.device).manual_seed(_video_seed(self.cfg.seed, key))
        return encode_video_latents(self.pipe.vae, video_frames_to_tensor(frames), gen)

