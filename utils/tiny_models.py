"""Tiny, seeded, deterministic local checkpoints with the on-disk format of the real models.

No machine of this project reaches the model hubs, so every code path that loads a real checkpoint
(``THUDM/CogVideoX-5b``, ``THUDM/CogVideoX-5b-I2V``, ``THUDM/CogVideoX1.5-5B``,
``Wan-AI/Wan2.2-TI2V-5B-Diffusers``, ``facebook/VGGT-1B``) is exercised on tiny models built here
from configs. Each tiny pipeline has the same component classes and the same config keys as the
real repository (``model_index.json``, ``tokenizer/``, ``text_encoder/``, ``vae/``,
``transformer/``, ``scheduler/``), written with ``save_pretrained`` and loaded back through the
very ``from_pretrained`` call a user's real checkpoint takes. Only the sizes differ.

=====================  ======================================  ===================================
name                   mirrors                                 what makes it that model
=====================  ======================================  ===================================
``cogvideox-t2v``      THUDM/CogVideoX-5b                      rotary position embeddings on
``cogvideox-i2v``      THUDM/CogVideoX-5b-I2V                  transformer in_channels = 2 x latent
                                                               channels, learned position table
``cogvideox1.5-t2v``   THUDM/CogVideoX1.5-5B                   ``patch_size_t`` 2, no patch bias
``vggt``               facebook/VGGT-1B                        config.json + model.safetensors
``da3``                depth-anything/DA3-LARGE                config.json + model.safetensors
``wan2.2-ti2v``        Wan-AI/Wan2.2-TI2V-5B-Diffusers         ``WanPipeline`` with
                                                               ``expand_timesteps``, 48-channel
                                                               Wan2.2 VAE (see ``utils.tiny_wan``)
=====================  ======================================  ===================================

CLI::

    python -m utils.tiny_models --out checkpoints/tiny            # all of them
    python -m utils.tiny_models --out checkpoints/tiny --only cogvideox-t2v

The tokenizer is a unigram SentencePiece-style model trained offline with ``tokenizers`` on a
fixed corpus (the T5 special tokens ``<pad>``=0, ``</s>``=1, ``<unk>``=2 and 100 ``<extra_id_*>``
sentinels, like T5's), wrapped in ``transformers.T5TokenizerFast``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from pathlib import Path

import torch

from utils.io_utils import apply_umask

logger = logging.getLogger(__name__)

TINY_NAMES = ("cogvideox-t2v", "cogvideox-i2v", "cogvideox1.5-t2v", "vggt", "da3", "wan2.2-ti2v")
DEFAULT_TINY_ROOT = Path(__file__).resolve().parent.parent / "checkpoints" / "tiny"

# Sizes shared by the three tiny CogVideoX pipelines. Pixel frames F map to (F - 1) / 4 + 1 latent
# frames; pixels map to latents by the VAE's 8x spatial compression (4 down blocks, like the real VAE).
TINY_NUM_FRAMES = 9          # -> 3 latent frames (CogVideoX-5B: 49 -> 13)
TINY_NUM_FRAMES_15 = 17      # -> 5 latent frames, padded to 6 by the pipeline for patch_size_t = 2
                             #    (CogVideoX1.5: 81 -> 21, padded to 22)
TINY_HEIGHT, TINY_WIDTH = 64, 96   # -> 8 x 12 latents (CogVideoX-5B: 480 x 720 -> 60 x 90)
TINY_LATENT_CHANNELS = 4     # real models: 16
TINY_TEXT_DIM = 32           # real models: 4096 (T5-XXL)
MAX_TEXT_SEQ_LEN = 226       # as in the real models

_CORPUS = [
    "a camera slowly orbits around a stone gateway with golden inscriptions",
    "the video explores a serene historical site with sweeping eaves and a tranquil courtyard",
    "a drone flies forward over a forest of autumn trees towards a lake",
    "rustic wooden barrels baskets and pumpkins in a park under soft light",
    "a cat sits on a sofa while the camera pans left across the living room",
    "a kitchen with a coffee cup on the table the camera moves closer",
    "city street at night with neon signs cars and people walking",
    "the camera tracks along a corridor of a museum with paintings on the walls",
    "mountains covered in snow under a clear blue sky seen from a moving car",
    "a red bicycle leaning against a brick wall in a quiet alley",
    "zoom in on a wooden bridge crossing a small river in a garden",
    "a cozy library with tall shelves of books and warm lamps",
]


def _build_tokenizer(save_dir: Path, model_max_length: int = MAX_TEXT_SEQ_LEN):
    """Train a small unigram tokenizer offline and save it as a T5 tokenizer folder."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import T5TokenizerFast

    specials = ["<pad>", "</s>", "<unk>"]
    extra_ids = [f"<extra_id_{i}>" for i in range(100)]
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=400, special_tokens=specials, unk_token="<unk>", shrinking_factor=0.75
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    from tokenizers.processors import TemplateProcessing

    tok.post_processor = TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = T5TokenizerFast(
        tokenizer_object=tok,
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_ids=0,
        additional_special_tokens=extra_ids,
        model_max_length=model_max_length,
    )
    fast.save_pretrained(save_dir)
    return fast


def _perturb_(module: torch.nn.Module, generator: torch.Generator, scale: float = 0.02) -> None:
    """Add seeded noise to every parameter, so that no zero-initialised path is a trivial identity.

    diffusers initialises some output projections to zero; a tiny model whose output is exactly zero
    would make tests (e.g. "a LoRA changes the video") pass for the wrong reason.
    """
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * scale)


def seeded_networks(seed: int, *builders) -> tuple[torch.nn.Module, ...]:
    """The networks of a tiny pipeline, deterministic for ``seed``: ``builders[i]()`` runs under
    ``torch.manual_seed(seed + i)`` (text encoder, VAE, transformer: ``seed``, ``seed + 1``,
    ``seed + 2``), then every parameter of every network gets :func:`_perturb_` noise from one
    ``torch.Generator`` seeded with ``seed``, in the same order."""
    gen = torch.Generator().manual_seed(seed)
    networks = []
    for offset, build in enumerate(builders):
        torch.manual_seed(seed + offset)
        networks.append(build())
    for m in networks:
        _perturb_(m, gen)
    return tuple(networks)


def tiny_t5_encoder(config_cls, model_cls, vocab_size: int, d_model: int):
    """A 2-layer, 4-head T5-family text encoder (``d_kv`` 8, ``d_ff`` 64, gated GELU, no dropout) built
    from ``config_cls`` (``T5Config`` for CogVideoX, ``UMT5Config`` for Wan2.2) as ``model_cls``
    (``T5EncoderModel`` / ``UMT5EncoderModel``); the real models' encoders are T5-XXL / UMT5-XXL."""
    cfg = config_cls(
        vocab_size=vocab_size,
        d_model=d_model,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
        is_encoder_decoder=False,
        use_cache=False,
    )
    return model_cls(cfg)


def _text_encoder(vocab_size: int):
    from transformers import T5Config, T5EncoderModel

    return tiny_t5_encoder(T5Config, T5EncoderModel, vocab_size, TINY_TEXT_DIM)


def _vae(invert_scale_latents: bool):
    from diffusers import AutoencoderKLCogVideoX

    return AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        latent_channels=TINY_LATENT_CHANNELS,
        layers_per_block=1,
        norm_num_groups=4,
        temporal_compression_ratio=4,
        sample_height=TINY_HEIGHT,
        sample_width=TINY_WIDTH,
        scaling_factor=0.7,
        invert_scale_latents=invert_scale_latents,
    )


def _transformer(kind: str):
    from diffusers import CogVideoXTransformer3DModel

    common = dict(
        num_attention_heads=2,
        attention_head_dim=16,
        out_channels=TINY_LATENT_CHANNELS,
        flip_sin_to_cos=True,
        freq_shift=0,
        time_embed_dim=16,
        text_embed_dim=TINY_TEXT_DIM,
        num_layers=2,
        dropout=0.0,
        attention_bias=True,
        sample_width=TINY_WIDTH // 8,
        sample_height=TINY_HEIGHT // 8,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=MAX_TEXT_SEQ_LEN,
        activation_fn="gelu-approximate",
        timestep_activation_fn="silu",
        norm_elementwise_affine=True,
        norm_eps=1e-5,
        spatial_interpolation_scale=1.875,
        temporal_interpolation_scale=1.0,
    )
    if kind == "cogvideox-t2v":
        return CogVideoXTransformer3DModel(
            in_channels=TINY_LATENT_CHANNELS,
            sample_frames=TINY_NUM_FRAMES,
            use_rotary_positional_embeddings=True,
            use_learned_positional_embeddings=False,
            **common,
        )
    if kind == "cogvideox-i2v":
        return CogVideoXTransformer3DModel(
            in_channels=2 * TINY_LATENT_CHANNELS,
            sample_frames=TINY_NUM_FRAMES,
            use_rotary_positional_embeddings=True,
            use_learned_positional_embeddings=True,
            **common,
        )
    if kind == "cogvideox1.5-t2v":
        return CogVideoXTransformer3DModel(
            in_channels=TINY_LATENT_CHANNELS,
            sample_frames=TINY_NUM_FRAMES_15,
            patch_size_t=2,
            patch_bias=False,
            use_rotary_positional_embeddings=True,
            use_learned_positional_embeddings=False,
            **common,
        )
    raise ValueError(f"unknown tiny CogVideoX kind {kind!r}")


def _scheduler():
    from diffusers import CogVideoXDDIMScheduler

    # The values of the real CogVideoX-5B scheduler_config.json (v-prediction, zero-terminal-SNR).
    return CogVideoXDDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=True,
        steps_offset=0,
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
        snr_shift_scale=1.0,
    )


def build_tiny_cogvideox(
    kind: str, out_dir: str | Path, seed: int = 0, round_trip_vae: bool = False
) -> Path:
    """Write a tiny diffusers CogVideoX pipeline folder for ``kind`` (one of ``TINY_NAMES[:3]``).

    ``round_trip_vae``: replace the random VAE weights by an exact linear autoencoder
    (``utils.tiny_linear_vae``: ``decode(encode(decode(z))) = decode(z)``), for experiments that
    encode the model's own videos again (``benchmarks/closed_loop.py``). Text encoder, transformer
    and scheduler are the same as without it; the default (False) is the models every test uses.

    The folder is written to a temporary sibling and renamed into place, so a half-built model is
    never left at ``out_dir``. The result is deterministic for a given ``seed``: the same seed gives
    bit-identical weights.

    Returns:
        ``out_dir`` as a Path; load it with ``CogVideoXPipeline.from_pretrained(out_dir)`` (t2v, 1.5)
        or ``CogVideoXImageToVideoPipeline.from_pretrained(out_dir)`` (i2v).
    Raises:
        ValueError: unknown ``kind``.
    """
    from diffusers import CogVideoXImageToVideoPipeline, CogVideoXPipeline

    if kind not in TINY_NAMES[:3]:
        raise ValueError(f"unknown tiny CogVideoX kind {kind!r}; expected one of {TINY_NAMES[:3]}")

    info = {"kind": kind, "seed": seed}

    def build(tmp: Path):
        tokenizer = _build_tokenizer(tmp / "_tok")
        text_encoder, vae, transformer = seeded_networks(
            seed,
            lambda: _text_encoder(len(tokenizer)),
            lambda: _vae(invert_scale_latents=(kind == "cogvideox1.5-t2v")),
            lambda: _transformer(kind),
        )
        if round_trip_vae:
            from utils.tiny_linear_vae import make_linear_autoencoder_

            make_linear_autoencoder_(vae, seed=seed + 3)
            info["vae"] = "exact linear autoencoder (utils/tiny_linear_vae.py)"
        cls = CogVideoXImageToVideoPipeline if kind == "cogvideox-i2v" else CogVideoXPipeline
        return cls(
            tokenizer=tokenizer,
            text_encoder=text_encoder,
            vae=vae,
            transformer=transformer,
            scheduler=_scheduler(),
        )

    return write_pipeline_folder(build, out_dir, info)


def write_pipeline_folder(build, out_dir: str | Path, info: dict) -> Path:
    """Save the diffusers pipeline ``build(tmp_dir)`` returns as a folder at ``out_dir``, atomically.

    ``build`` may write scratch files under ``tmp_dir`` (e.g. the tokenizer); the pipeline is saved
    with ``save_pretrained(safe_serialization=True)`` into a temporary sibling of ``out_dir`` together
    with ``tiny_model_info.json`` (``info`` plus a note), then renamed into place, so a half-built
    model is never left at ``out_dir``. An existing ``out_dir`` is replaced.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        pipe = build(tmp)
        pipe.save_pretrained(tmp / "pipe", safe_serialization=True)
        (tmp / "pipe" / "tiny_model_info.json").write_text(
            json.dumps({**info, "note": "tiny random model for tests"}, indent=2)
        )
        apply_umask(tmp / "pipe")  # safetensors writes 0600
        if out_dir.exists():
            shutil.rmtree(out_dir)
        (tmp / "pipe").rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def build_tiny_wan(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a tiny Wan2.2-TI2V-5B pipeline (format of ``Wan-AI/Wan2.2-TI2V-5B-Diffusers``; ``utils.tiny_wan``)."""
    from utils.tiny_wan import write_tiny_wan

    return write_tiny_wan(out_dir, seed=seed)


def build_tiny_vggt(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a tiny VGGT in the ``facebook/VGGT-1B`` on-disk format (see ``vggt.tiny``)."""
    from vggt.tiny import write_tiny_vggt

    return Path(write_tiny_vggt(out_dir, seed=seed))


def build_tiny_da3(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a tiny Depth Anything 3 in the hub on-disk format (see ``depth_anything_3.tiny``)."""
    from depth_anything_3.tiny import write_tiny_da3

    return Path(write_tiny_da3(out_dir, seed=seed))


def tiny_path(name: str, root: str | Path = DEFAULT_TINY_ROOT) -> Path:
    """Folder of tiny model ``name`` under ``root`` (not built; see :func:`ensure_tiny_models`)."""
    if name not in TINY_NAMES:
        raise ValueError(f"unknown tiny model {name!r}; expected one of {TINY_NAMES}")
    return Path(root) / name


def _is_complete(path: Path, name: str) -> bool:
    if name in ("vggt", "da3"):
        return (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    return (path / "model_index.json").is_file() and (path / "transformer" / "config.json").is_file()


def ensure_tiny_models(
    root: str | Path = DEFAULT_TINY_ROOT, names=TINY_NAMES, seed: int = 0, force: bool = False
) -> dict[str, Path]:
    """Build the tiny models under ``root`` unless already present; returns ``{name: folder}``."""
    out = {}
    for name in names:
        path = tiny_path(name, root)
        if force or not _is_complete(path, name):
            logger.info("building tiny model %s at %s", name, path)
            if name == "vggt":
                build_tiny_vggt(path, seed=seed)
            elif name == "da3":
                build_tiny_da3(path, seed=seed)
            elif name == "wan2.2-ti2v":
                build_tiny_wan(path, seed=seed)
            else:
                build_tiny_cogvideox(name, path, seed=seed)
        out[name] = path
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(DEFAULT_TINY_ROOT), help="root folder (default: %(default)s)")
    p.add_argument("--only", nargs="*", choices=TINY_NAMES, default=list(TINY_NAMES))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="rebuild even if present")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name, path in ensure_tiny_models(args.out, args.only, args.seed, args.force).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
