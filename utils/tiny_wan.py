"""A tiny, seeded Wan2.2-TI2V-5B pipeline folder in the format of ``Wan-AI/Wan2.2-TI2V-5B-Diffusers``.

Same component classes and the same config keys as the real repository, written with
``save_pretrained`` and loaded back with ``DiffusionPipeline.from_pretrained`` (which reads
``model_index.json`` and builds a ``WanPipeline`` with ``expand_timesteps=True``); only the sizes
differ. What makes it Wan2.2-TI2V:

- ``model_index.json``: ``_class_name`` ``WanPipeline``, ``expand_timesteps`` true (first-frame
  conditioning by per-token timesteps: the first latent frame is the clean image latent with
  timestep 0), ``boundary_ratio`` null, no ``transformer_2``.
- ``vae/``: ``AutoencoderKLWan`` as the Wan2.2 VAE: ``is_residual`` true, ``z_dim`` 48,
  ``patch_size`` 2 (pixels are unshuffled 2x2 -> ``in_channels`` 12 = 3 x 2 x 2),
  ``scale_factor_spatial`` 16, ``scale_factor_temporal`` 4, ``temperal_downsample``
  [False, True, True], ``latents_mean`` / ``latents_std`` of length 48 (the real values).
- ``transformer/``: ``WanTransformer3DModel`` with in = out = 48 channels, ``patch_size`` (1, 2, 2),
  ``qk_norm`` ``rms_norm_across_heads``, ``cross_attn_norm`` true, ``image_dim`` null (no CLIP image
  branch: the image enters through the latent, not through cross-attention).
- ``text_encoder/``: ``UMT5EncoderModel`` (``utils.tiny_models.tiny_t5_encoder``); ``tokenizer/``:
  ``T5TokenizerFast`` (the project's tiny unigram tokenizer, ``utils.tiny_models``).
- ``scheduler/``: ``UniPCMultistepScheduler`` in flow-matching mode (``prediction_type``
  ``flow_prediction``, ``use_flow_sigmas`` true) with ``flow_shift`` 5.0.

Sources of the real values: the ``vae/config.json`` of ``Wan-AI/Wan2.2-TI2V-5B-Diffusers`` (as quoted
in public mirrors of it), the official ``wan/configs/wan_ti2v_5B.py`` of Wan-Video/Wan2.2
(``sample_shift`` 5.0, transformer dim 3072 = 24 heads x 128, 30 layers, ffn 14336), the
``model_index.json`` of the diffusers repository (``WanPipeline``, ``expand_timesteps`` true,
``UniPCMultistepScheduler``), and diffusers' own fast test of the 5B pipeline
(``tests/pipelines/wan/test_wan_22_image_to_video.py``, ``Wan225BImageToVideoPipelineFastTests``).

Sizes: a 17-frame 32 x 32 video -> 5 latent frames of 2 x 2 (48 channels) -> 5 x 1 x 1 tokens.
"""

from __future__ import annotations

from pathlib import Path

from utils.tiny_models import _build_tokenizer, seeded_networks, tiny_t5_encoder, write_pipeline_folder

# Real Wan2.2 VAE latent statistics (vae/config.json of Wan-AI/Wan2.2-TI2V-5B-Diffusers), 48 channels.
WAN22_LATENTS_MEAN = [
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557, -0.1382, 0.0542, 0.2813, 0.0891,
    0.157, -0.0098, 0.0375, -0.1825, -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.123, -0.0313, -0.1649, 0.0117, 0.0723,
    -0.2839, -0.2083, -0.052, 0.3748, 0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
]
WAN22_LATENTS_STD = [
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.499, 0.4818, 0.5013, 0.8158, 1.0344, 0.5894, 1.0901,
    0.6885, 0.6165, 0.8454, 0.4978, 0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093, 0.5709, 0.6065, 0.6415, 0.4944,
    0.5726, 1.2042, 0.5458, 1.6887, 0.3971, 1.06, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
]
WAN22_Z_DIM = 48                # real
TINY_WAN_NUM_FRAMES = 17        # -> 5 latent frames (real default 121 -> 31)
TINY_WAN_HEIGHT = TINY_WAN_WIDTH = 32   # -> 2 x 2 latents (real 704 x 1280 -> 44 x 80)
TINY_WAN_TEXT_DIM = 32          # real: 4096 (UMT5-XXL)
TINY_WAN_MAX_SEQ_LEN = 512      # as the real tokenizer / pipeline default


def _vae():
    from diffusers import AutoencoderKLWan

    return AutoencoderKLWan(
        base_dim=8,                       # real 160
        decoder_base_dim=8,               # real 256
        z_dim=WAN22_Z_DIM,
        dim_mult=[1, 1, 2, 2],            # real [1, 2, 4, 4]; 4 entries -> 3 spatial downsamples (8x)
        num_res_blocks=1,                 # real 2
        attn_scales=[],
        temperal_downsample=[False, True, True],
        dropout=0.0,
        latents_mean=list(WAN22_LATENTS_MEAN),
        latents_std=list(WAN22_LATENTS_STD),
        is_residual=True,
        in_channels=12,
        out_channels=12,
        patch_size=2,                     # x 8 from the blocks = 16x spatial
        scale_factor_spatial=16,
        scale_factor_temporal=4,
    )


def _transformer():
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,            # real 24
        attention_head_dim=12,            # real 128 (rotary split t/h/w = 4/4/4 here)
        in_channels=WAN22_Z_DIM,
        out_channels=WAN22_Z_DIM,
        text_dim=TINY_WAN_TEXT_DIM,
        freq_dim=256,                     # real
        ffn_dim=32,                       # real 14336
        num_layers=2,                     # real 30
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=1e-6,
        image_dim=None,
        added_kv_proj_dim=None,
        rope_max_seq_len=32,              # real 1024
    )


def _text_encoder(vocab_size: int):
    from transformers import UMT5Config, UMT5EncoderModel

    return tiny_t5_encoder(UMT5Config, UMT5EncoderModel, vocab_size, TINY_WAN_TEXT_DIM)


def _scheduler():
    from diffusers import UniPCMultistepScheduler

    # The diffusers Wan scheduler_config.json layout (UniPC in flow-matching mode); flow_shift 5.0 is
    # the TI2V-5B sample_shift of the official Wan2.2 config (wan/configs/wan_ti2v_5B.py).
    return UniPCMultistepScheduler(
        num_train_timesteps=1000,
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=5.0,
        solver_order=2,
        solver_type="bh2",
        predict_x0=True,
        lower_order_final=True,
        final_sigmas_type="zero",
        timestep_spacing="linspace",
    )


def build_tiny_wan_pipeline(tokenizer, seed: int = 0):
    """A tiny random ``WanPipeline`` (``expand_timesteps=True``) around ``tokenizer``; not saved.

    Weights are seeded (``seed`` for the text encoder, ``seed + 1`` the VAE, ``seed + 2`` the
    transformer) and every parameter gets seeded noise (``utils.tiny_models.seeded_networks``), so that
    zero-initialised output layers do not make the model a trivial identity.
    """
    from diffusers import WanPipeline


    text_encoder, vae, transformer = seeded_networks(seed, lambda: _text_encoder(len(tokenizer)), _vae, _transformer)
    return WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=_scheduler(),
        transformer_2=None,
        boundary_ratio=None,
        expand_timesteps=True,
    )


def write_tiny_wan(out_dir: str | Path, seed: int = 0) -> Path:
    """Write the tiny Wan2.2-TI2V pipeline folder to ``out_dir`` (atomically; see ``utils.tiny_models``).

    Returns:
        ``out_dir`` as a Path; load it with ``DiffusionPipeline.from_pretrained(out_dir)`` (a
        ``WanPipeline``) or ``WanImageToVideoPipeline.from_pretrained(out_dir)`` (first-frame input).
    """

    def build(tmp: Path):
        tokenizer = _build_tokenizer(tmp / "_tok", model_max_length=TINY_WAN_MAX_SEQ_LEN)
        return build_tiny_wan_pipeline(tokenizer, seed=seed)

    return write_pipeline_folder(build, out_dir, {"kind": "wan2.2-ti2v", "seed": seed})
