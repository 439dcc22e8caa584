"""Latent encoding for Diffusion-DPO training: videos -> VAE latents, prompts -> T5 embeddings,
I2V first frames -> image-conditioning latents. Training then needs neither VAE nor text encoder.

Shared by ``train_dpo/*/03_encode.py`` (those scripts only set per-model constants).

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

Output JSON = input JSON + ``latent_path`` per video + ``condition_path`` per group (relative to
the base path), written atomically after every group. Re-running skips videos whose latent file
exists, loads and was encoded at the same frame count and size (and groups whose condition file
does); a video that fails (unreadable, too few
frames) gets ``"error"`` and is skipped; videos that already carry ``"error"`` (e.g. from the
scorer) are not encoded.

Sharding (``utils.jobs``, as generation and scoring): ``--num_shards K --shard_index i`` (default:
the torchrun/srun variables) encodes a contiguous block of the groups into
``<output>.shard<i>of<K>.json`` (with the run settings under ``"encode_shard"``); ``--merge`` joins
the shards into the output after checking that every shard is there, all were encoded with the same
settings and together they are the input's groups (else exit 2).

The model-specific steps sit behind an encoder object (:class:`CogVideoXEncoder` here; Wan2.2:
``train_dpo.encode_wan.WanEncoder``); the JSON, file and resume logic above is shared.
"""

from __future__ import annotations

import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from utils.config_cli import Arg, build_config_parser, config_from_args
from utils.device import compute_dtype, resolve_device
from utils.io_utils import JSONInputError, atomic_write_bytes, atomic_write_json, read_json, slugify
from utils.jobs import ShardError, check_shard, launch_defaults, shard_path, shard_range
from utils.launcher import SHARD_HELP
from utils.model_facts import requires_image_latents
from utils.vae_tiling import enable_vae_memory_savers, encode_latent_dist

logger = logging.getLogger(__name__)

__all__ = [
    "EncodeConfig",
    "load_encode_pipeline",
    "is_i2v_pipeline",
    "video_frames_to_tensor",
    "encode_video_latents",
    "encode_prompt_embeds",
    "prepare_image_latents",
    "encode_group_condition",
    "CogVideoXEncoder",
    "save_tensors",
    "tensors_file_ok",
    "encode_dataset",
    "build_encode_argparser",
    "run_encode_cli",
]


@dataclass
class EncodeConfig:
    """Settings of one encoding run (``03_encode.py`` fills them from its constants + argv).

    Attributes:
        base_model: diffusers CogVideoX pipeline folder or hub id.
        input_json: scored (or raw) groups JSON; paths in it are relative to ``base_path``.
        output_json: where the encoded JSON goes (may equal ``input_json``).
        base_path: folder the JSON paths are relative to (None: the input JSON's folder, joined
            with the JSON's ``"video_root"`` when present, as ``generate/candidates.py`` writes it).
        latent_dir: folder for the safetensors files; relative paths are under ``base_path``.
        num_frames, height, width: frames sampled per video and the model's resolution.
        seed: VAE posterior sampling: per video ``seed`` mixed with the crc32 of its path; the I2V
            image latents use ``seed`` itself (like ``pipe(..., generator=manual_seed(seed))``).
        device: ``"cuda"``/``"cpu"``/None (CUDA when available).
        dtype: ``"bf16"``/``"fp16"``/``"fp32"``/None (``utils.device.compute_dtype``: bf16 on CUDA
            from sm_80 on, fp16 on older GPUs, fp32 on CPU).
        vae_slicing, vae_tiling: memory savers of the VAE (tiling changes latents slightly).
        max_sequence_length: T5 tokens (226 for every CogVideoX).
        limit_groups: encode only the first N groups (smoke runs).
        overwrite: re-encode even when files exist.
        retry_errors: re-try videos whose entry carries an ``"error"`` from an earlier encoding.
        num_shards, shard_index: encode only shard ``shard_index`` of ``num_shards`` (a contiguous
            block of the groups, :func:`utils.jobs.shard_range`) into
            :func:`utils.jobs.shard_path` of ``output_json``;
            :func:`train_dpo.encode_shards.merge_encoded_shards` joins them.
    """

    base_model: str
    input_json: str
    output_json: str
    base_path: str | None = None
    latent_dir: str = "latents"
    num_frames: int = 49
    height: int = 480
    width: int = 720
    seed: int = 0
    device: str | None = None
    dtype: str | None = None
    vae_slicing: bool = True
    vae_tiling: bool = True
    max_sequence_length: int = 226
    limit_groups: int | None = None
    overwrite: bool = False
    retry_errors: bool = False
    num_shards: int = 1
    shard_index: int = 0


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def _resolve_device_dtype(device: str | None, dtype: str | None) -> tuple[torch.device, torch.dtype]:
    dev = resolve_device(device)
    if dtype is None:
        return dev, compute_dtype(dev)
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    return dev, _DTYPES[dtype]


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


def video_frames_to_tensor(frames, device=None, dtype=torch.float32) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` RGB (numpy or torch) -> ``[1, 3, T, H, W]`` in [-1, 1] (``x/255*2-1``)."""
    t = torch.as_tensor(frames)
    if t.dim() != 4 or t.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3], got {tuple(t.shape)}")
    t = t.to(device=device, dtype=torch.float32).div(255.0).mul(2.0).sub(1.0)
    return t.permute(3, 0, 1, 2).unsqueeze(0).to(dtype)


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


class CogVideoXEncoder:
    """What :func:`encode_dataset` calls per group and per video, for a CogVideoX pipeline.

    Another family plugs in an object with the same members (``train_dpo.encode_wan.WanEncoder``):
    ``image_mode`` (``"required"``: every group needs ``image_path``; ``"optional"``: used when
    present; ``"none"``: ignored), ``meta`` (stored in every file), ``encode_condition(prompt,
    image_path_or_None) -> dict`` and ``encode_video(frames uint8 [T, H, W, 3], key) -> tensor``.
    """

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
            dev, dt = _resolve_device_dtype(cfg.device, cfg.dtype)
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


def save_tensors(
    path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict | None = None
) -> None:
    """Write ``tensors`` (moved to CPU, contiguous) as safetensors atomically."""
    from safetensors.torch import save

    data = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    atomic_write_bytes(path, save(data, metadata=meta))


def tensors_file_ok(
    path: str | os.PathLike, keys: tuple[str, ...], expect_meta: dict[str, Any] | None = None
) -> bool:
    """True when ``path`` is a readable safetensors file holding every key in ``keys`` and, when
    given, metadata equal (as strings) to ``expect_meta`` (e.g. frames/size it was encoded at)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            if not set(keys) <= set(f.keys()):
                return False
            for k in keys:
                f.get_slice(k).get_shape()
            meta = f.metadata() or {}
        return all(meta.get(k) == str(v) for k, v in (expect_meta or {}).items())
    except Exception:  # noqa: BLE001 - any read failure means "re-encode"
        return False


def _rel(path: Path, base: Path) -> str:
    try:
        return os.path.relpath(path, base)
    except ValueError:  # different drive (Windows)
        return str(path)


def _video_seed(seed: int, key: str) -> int:
    return (int(seed) * 1_000_003 + zlib.crc32(key.encode("utf-8"))) % (2**63 - 1)


def _merge_previous(groups: list[dict], previous: dict | None) -> None:
    """Copy latent_path / condition_path / encoder errors from an earlier output JSON (resume)."""
    if not previous:
        return
    prev = {str(g.get("group_id")): g for g in previous.get("groups", []) if isinstance(g, dict)}
    for g in groups:
        pg = prev.get(str(g.get("group_id")))
        if not pg:
            continue
        if pg.get("condition_path") and "condition_path" not in g:
            g["condition_path"] = pg["condition_path"]
        pv = {v.get("video_path"): v for v in pg.get("videos", []) if isinstance(v, dict)}
        for v in g.get("videos", []):
            old = pv.get(v.get("video_path"))
            if not old:
                continue
            if old.get("latent_path") and "latent_path" not in v:
                v["latent_path"] = old["latent_path"]
            if old.get("encode_error") and "error" not in v:
                v["error"] = old["error"]
                v["encode_error"] = True


def encode_dataset(cfg: EncodeConfig, pipe=None, encoder_factory=None) -> dict[str, Any]:
    """Encode every group/video of ``cfg.input_json``; write ``cfg.output_json`` after each group.

    Args:
        cfg: see :class:`EncodeConfig`.
        pipe: an already loaded pipeline (tests); default loads ``cfg.base_model``.
        encoder_factory: ``(cfg, pipe) -> encoder`` (see :class:`CogVideoXEncoder`, the default);
            called after the input JSON has been read.

    Returns:
        Stats: ``groups``, ``videos_encoded``, ``videos_skipped_existing``,
        ``videos_skipped_error`` (carried an error already), ``videos_failed`` (new errors),
        ``conditions_encoded``, ``conditions_skipped_existing``, ``output_json``.

    Raises:
        JSONInputError: input JSON missing or malformed. ValueError: no ``"groups"`` list; I2V model
        and a group without ``image_path``.
    """
    from tqdm.auto import tqdm

    from train_dpo.dataset import default_base_path
    from utils.video_utils import VideoReadError, load_frames

    data = read_json(cfg.input_json)
    if not isinstance(data, dict) or not isinstance(data.get("groups"), list):
        raise ValueError(f'{cfg.input_json}: expected an object with a "groups" list')
    base = Path(cfg.base_path) if cfg.base_path is not None else default_base_path(cfg.input_json, data)
    latent_dir = Path(cfg.latent_dir)
    if not latent_dir.is_absolute():
        latent_dir = base / latent_dir
    out_json = Path(cfg.output_json)
    groups = data["groups"] if cfg.limit_groups is None else data["groups"][: cfg.limit_groups]
    if int(cfg.num_shards) > 1:  # a shard's output holds its own groups only
        block = shard_range(len(groups), cfg.shard_index, cfg.num_shards)
        groups = groups[block.start : block.stop]
        from train_dpo.encode_shards import SHARD_KEY, shard_settings

        data = {**data, "groups": groups, SHARD_KEY: {"index": int(cfg.shard_index),
                "num_shards": int(cfg.num_shards), "settings": shard_settings(cfg)}}  # fmt: skip
        out_json = shard_path(out_json, cfg.shard_index, cfg.num_shards)
    if out_json.is_file() and out_json.resolve() != Path(cfg.input_json).resolve() and not cfg.overwrite:
        try:
            _merge_previous(data["groups"], read_json(out_json))
        except Exception as e:  # noqa: BLE001
            logger.warning("ignoring unreadable previous output %s: %s", out_json, e)
    encoder = (encoder_factory or CogVideoXEncoder.from_config)(cfg, pipe)
    meta = {
        "base_model": cfg.base_model,
        "num_frames": cfg.num_frames,
        "height": cfg.height,
        "width": cfg.width,
        **encoder.meta,
        "format": "videogpa-latents-v1",
    }
    same = {k: meta[k] for k in ("num_frames", "height", "width")}  # existing files must match these
    stats = dict.fromkeys(
        ["groups", "videos_encoded", "videos_skipped_existing", "videos_skipped_error", "videos_failed",
         "conditions_encoded", "conditions_skipped_existing"], 0)  # fmt: skip
    bar = tqdm(total=sum(len(g.get("videos") or []) for g in groups), desc="encode", unit="video")
    for gi, group in enumerate(groups):
        gid = str(group.get("group_id", gi))
        gdir = latent_dir / slugify(gid, max_len=80)
        # ---- condition (prompt embeddings [+ image latents]) once per group
        cond_file = gdir / "condition.safetensors"
        if encoder.image_mode == "required" and not group.get("image_path"):
            raise ValueError(f"group {gid}: an I2V model needs 'image_path'")
        image = None
        if encoder.image_mode != "none" and group.get("image_path"):
            image = base / group["image_path"]  # an absolute image_path stays absolute
        cond_keys = ("prompt_embeds", "image_latents") if image is not None else ("prompt_embeds",)
        if not cfg.overwrite and tensors_file_ok(cond_file, cond_keys, same):
            stats["conditions_skipped_existing"] += 1
        else:
            cond = encoder.encode_condition(str(group.get("prompt", "")), image)
            save_tensors(cond_file, cond, dict(meta, group_id=gid, prompt=str(group.get("prompt", ""))))
            stats["conditions_encoded"] += 1
        group["condition_path"] = _rel(cond_file, base)
        # ---- videos
        for vi, video in enumerate(group.get("videos") or []):
            bar.update(1)
            vpath = video.get("video_path")
            if video.get("error") and not (cfg.retry_errors and video.get("encode_error")):
                stats["videos_skipped_error"] += 1
                continue
            if not vpath:
                video["error"], video["encode_error"] = "no video_path", True
                stats["videos_failed"] += 1
                continue
            name = f"{vi:03d}_{slugify(Path(vpath).stem, max_len=60)}"
            if video.get("seed") is not None:
                name += f"_seed{video['seed']}"
            lat_file = gdir / f"{name}.safetensors"
            if not cfg.overwrite and tensors_file_ok(lat_file, ("latents",), same):
                video["latent_path"] = _rel(lat_file, base)
                stats["videos_skipped_existing"] += 1
                continue
            src = Path(vpath) if Path(vpath).is_absolute() else base / vpath
            try:
                frames = load_frames(src, cfg.num_frames, cfg.height, cfg.width)
                lat = encoder.encode_video(frames, str(vpath))
            except (VideoReadError, ValueError, RuntimeError) as e:
                logger.warning("group %s video %s: %s", gid, vpath, e)
                video["error"], video["encode_error"] = f"encode: {e}", True
                video.pop("latent_path", None)
                stats["videos_failed"] += 1
                continue
            save_tensors(lat_file, {"latents": lat}, dict(meta, group_id=gid, video_path=str(vpath)))
            video["latent_path"] = _rel(lat_file, base)
            video.pop("encode_error", None)
            if cfg.retry_errors and str(video.get("error", "")).startswith("encode:"):
                video.pop("error", None)
            stats["videos_encoded"] += 1
        stats["groups"] += 1
        atomic_write_json(out_json, data)
    bar.close()
    atomic_write_json(out_json, data)
    stats["output_json"] = str(out_json)
    logger.info("encoding done: %s", stats)
    return stats


ENCODE_ARGS: dict[str, dict[str, str | Arg]] = {
    "model and data": {
        "base_model": "diffusers CogVideoX pipeline folder or hub id",
        "input_json": "scored groups JSON of 02_score.py",
        "output_json": "encoded JSON to write (input + latent_path per video, condition_path per group)",
        "base_path": "JSON paths are relative to this (none: the input JSON's folder + its video_root)",
        "latent_dir": "folder of the safetensors files (relative: under base_path)",
    },
    "frames": {
        "num_frames": "frames sampled uniformly per video (first and last included)",
        "height": "frame height in pixels (the model's)",
        "width": "frame width in pixels (the model's)",
        "seed": "VAE posterior sampling (per video: mixed with the crc32 of its path)",
    },
    "hardware and memory": {
        "device": "cuda or cpu (none: CUDA when available)",
        "dtype": Arg("weights and compute dtype (none: bf16 on CUDA, fp32 on CPU)",
                     choices=tuple(sorted(_DTYPES))),
        "vae_slicing": "decode/encode the batch one video at a time",
        "vae_tiling": "tiled VAE (changes latents slightly)",
        "max_sequence_length": "T5 tokens (226 for every CogVideoX)",
    },
    "sharding (one process per shard; --merge joins the shard outputs)": {
        "num_shards": f"split the groups into K shards ({SHARD_HELP})",
        "shard_index": "which shard this process encodes",
    },
    "run": {
        "limit_groups": "encode only the first N groups (smoke runs; none: all)",
        "overwrite": "re-encode even when the files exist",
        "retry_errors": "re-try videos whose entry carries an error from an earlier encoding",
    },
}


def build_encode_argparser(constants: dict[str, Any] | None = None, description: str | None = None):
    """argparse parser over :class:`EncodeConfig`; ``constants`` (a per-model script's, any case)
    set the defaults.

    Raises:
        SystemExit(2): a constant names no setting (message names it and the nearest one).
    """
    launch, launch_error = launch_defaults()  # an inconsistent environment is reported by run_encode_cli
    p = build_config_parser(EncodeConfig, ENCODE_ARGS, constants=constants,
                            defaults={"num_shards": launch.num_shards, "shard_index": launch.shard_index},
                            description=description or "Encode videos/prompts to latents for DPO.")  # fmt: skip
    p.set_defaults(launch_error=launch_error, local_rank=launch.local_rank)
    p.add_argument("--merge", action="store_true",
                   help="do not encode: merge the shard outputs into --output_json")  # fmt: skip
    return p


def run_encode_cli(
    argv=None, constants: dict[str, Any] | None = None, description: str | None = None, encoder_factory=None
) -> int:
    """Parse ``argv`` over ``constants``, run :func:`encode_dataset` (with ``encoder_factory``, see
    there); returns an exit code.

    0: done; 2: bad input (missing/malformed JSON, bad or inconsistent shard arguments or launcher
    variables, a missing or inconsistent shard at ``--merge``). argparse errors (missing or unknown
    setting, bad value) exit 2 through ``SystemExit``.
    """
    from utils.log_filters import quiet_expected_messages

    args = build_encode_argparser(constants, description).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_expected_messages()
    if args.device is None and args.local_rank is not None and torch.cuda.is_available():
        args.device = f"cuda:{args.local_rank % torch.cuda.device_count()}"  # one GPU per launcher task
    cfg = config_from_args(EncodeConfig, args)
    try:
        if args.launch_error:
            raise ShardError(args.launch_error)
        check_shard(cfg.shard_index, cfg.num_shards)
        if args.merge:
            from train_dpo.encode_shards import merge_encoded_shards

            print(f"merged: {merge_encoded_shards(cfg)}")
            return 0
        encode_dataset(cfg, encoder_factory=encoder_factory)
    except (JSONInputError, ValueError, FileNotFoundError) as e:
        logger.error("%s", e)
        return 2
    return 0
