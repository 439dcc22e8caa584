"""The shared latent-encoding engine of Diffusion-DPO training: settings, file format, resume, shards.

Videos -> VAE latents, prompts -> text embeddings, first frames -> image-conditioning latents, so
that training needs neither VAE nor text encoder. :func:`encode_dataset` walks the groups JSON and
calls a model family's encoder (:class:`Encoder`: ``train_dpo.encode_cogvideox.CogVideoXEncoder``,
``train_dpo.encode_wan.WanEncoder``) once per group (condition) and once per video (latents); the
command line of ``train_dpo/*/03_encode.py`` is ``train_dpo.encode_cli``.

Frames: ``NUM_FRAMES`` frames spread uniformly over the whole video (``utils.video_utils.load_frames``:
first and last frame included, centre crop to the model's aspect ratio, bicubic resize to ``HEIGHT x
WIDTH``), handed to the encoder as uint8 ``[T, H, W, 3]``; :func:`video_frames_to_tensor` gives the
pipelines' normalisation ``x / 255 * 2 - 1``.

Files: per group ``<latent_dir>/<group slug>/condition.safetensors`` (``prompt_embeds`` [+
``image_latents``]), per video ``<latent_dir>/<group slug>/<index>_<video slug>[_seed<s>].safetensors``
(``latents``); each with metadata (model, frames, size, the encoder's ``meta``, ``format =
videogpa-latents-v1``), written atomically (:func:`save_tensors`).

Output JSON = input JSON + ``latent_path`` per video + ``condition_path`` per group (relative to
the base path), written atomically after every group. Re-running skips videos whose latent file
exists, loads and was encoded at the same frame count and size (and groups whose condition file
does); a video that fails (unreadable, too few frames) gets ``"error"`` (and ``"encode_error"``) and
is skipped; videos that already carry ``"error"`` (e.g. from the scorer) are not encoded.

Sharding (``utils.jobs``, as generation and scoring): ``--num_shards K --shard_index i`` (default:
the torchrun/srun variables) encodes a contiguous block of the groups into
``<output>.shard<i>of<K>.json`` (with the run settings under ``"encode_shard"``); ``--merge`` joins
the shards into the output after checking that every shard is there, all were encoded with the same
settings and together they are the input's groups (else exit 2; ``train_dpo.encode_shards``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from utils.device import compute_dtype, resolve_device
from utils.io_utils import atomic_write_bytes, atomic_write_json, read_json, slugify
from utils.jobs import shard_path, shard_range

logger = logging.getLogger(__name__)

__all__ = [
    "DTYPES",
    "EncodeConfig",
    "Encoder",
    "encode_dataset",
    "resolve_device_dtype",
    "save_tensors",
    "tensors_file_ok",
    "video_frames_to_tensor",
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


DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def resolve_device_dtype(device: str | None, dtype: str | None) -> tuple[torch.device, torch.dtype]:
    """``(device, dtype)`` of an encoding run: ``device`` by ``utils.device.resolve_device`` (None: CUDA
    when available), ``dtype`` one of :data:`DTYPES`' names or None (``utils.device.compute_dtype``).

    Raises:
        ValueError: an unknown dtype name.
    """
    dev = resolve_device(device)
    if dtype is None:
        return dev, compute_dtype(dev)
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return dev, DTYPES[dtype]


class Encoder(Protocol):
    """What :func:`encode_dataset` calls per group and per video (one implementation per model family).

    Attributes:
        image_mode: ``"required"`` (every group needs ``image_path``), ``"optional"`` (used when
            present) or ``"none"`` (ignored).
        meta: stored in the metadata of every file (e.g. ``scaling_factor``, ``vae_tiling``).
    """

    image_mode: str
    meta: dict[str, Any]

    def encode_condition(self, prompt: str, image) -> dict[str, torch.Tensor]:
        """``{"prompt_embeds": ...}`` (+ ``"image_latents"`` when ``image``, a path, is given)."""
        ...

    def encode_video(self, frames, key: str) -> torch.Tensor:
        """Latents of uint8 ``frames [T, H, W, 3]``; ``key`` (the video path) may seed sampling."""
        ...


def video_frames_to_tensor(frames, device=None, dtype=torch.float32) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` RGB (numpy or torch) -> ``[1, 3, T, H, W]`` in [-1, 1] (``x/255*2-1``)."""
    t = torch.as_tensor(frames)
    if t.dim() != 4 or t.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3], got {tuple(t.shape)}")
    t = t.to(device=device, dtype=torch.float32).div(255.0).mul(2.0).sub(1.0)
    return t.permute(3, 0, 1, 2).unsqueeze(0).to(dtype)


def save_tensors(
    path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict | None = None
) -> None:
    """Write ``tensors`` (moved to CPU, contiguous) as safetensors atomically."""
    from safetensors.torch import save

    data = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    atomic_write_bytes(path, save(data, metadata=meta))


def tensors_file_ok(
    path: str | os.PathLike, keys: tuple[str, ...], expect_meta: dict[str, Any] | None = None,
    exact_keys: bool = False,
) -> bool:
    """True when ``path`` is a readable safetensors file holding every key in ``keys`` (with
    ``exact_keys``: no other key) and, when given, metadata equal (as strings) to ``expect_meta``
    (e.g. frames/size and encoder settings it was encoded with)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            have = set(f.keys())
            if not set(keys) <= have or (exact_keys and have != set(keys)):
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
        encoder_factory: ``(cfg, pipe) -> encoder`` (interface: :class:`Encoder`; default
            ``train_dpo.encode_cogvideox.CogVideoXEncoder.from_config``);
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
    if encoder_factory is None:
        from train_dpo.encode_cogvideox import CogVideoXEncoder  # local: that module imports this one

        encoder_factory = CogVideoXEncoder.from_config
    encoder = encoder_factory(cfg, pipe)
    meta = {
        "base_model": cfg.base_model,
        "num_frames": cfg.num_frames,
        "height": cfg.height,
        "width": cfg.width,
        **encoder.meta,
        "format": "videogpa-latents-v1",
    }
    # existing files are kept only when encoded at this size by an encoder with these settings (VAE
    # tiling aside: it changes only the blending at tile seams, not the latent space)
    same = {k: meta[k] for k in ("num_frames", "height", "width", *encoder.meta) if k != "vae_tiling"}
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
        cond_meta = dict(meta, group_id=gid, prompt=str(group.get("prompt", "")),
                         max_sequence_length=cfg.max_sequence_length)  # fmt: skip
        same_cond = dict(same, prompt=cond_meta["prompt"], max_sequence_length=cfg.max_sequence_length)
        # exact keys: a group whose image was removed must not keep its old image latents
        if not cfg.overwrite and tensors_file_ok(cond_file, cond_keys, same_cond, exact_keys=True):
            stats["conditions_skipped_existing"] += 1
        else:
            cond = encoder.encode_condition(str(group.get("prompt", "")), image)
            save_tensors(cond_file, cond, cond_meta)
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
