"""DA3 model configs: the schema of ``tests/fixtures/da3/da3_tiny_config.json`` and released presets.

A config is a dict with sections ``backbone`` (``out_layers`` + :class:`DinoVisionTransformer`
keyword arguments), ``head`` (:class:`DualDPT`), ``cam_dec`` (:class:`CameraDec`) and ``cam_enc``
(:class:`CameraEnc`); ``cam_dec``/``cam_enc`` may be absent or None. A hub ``config.json`` that
only names a preset (``{"model_name": "da3-large"}``, as ``PyTorchModelHubMixin`` writes the
reference's ``DepthAnything3(model_name=...)``) resolves to that preset.

Presets (reference ``configs/da3-{small,base,large}.yaml``; only DA3-Large's state dict is checked
against the released layout, ``tests/fixtures/da3/da3_large_state_dict_manifest.json``). DA3-Giant
(SwiGLU FFN, Gaussian head) and the metric / mono / nested variants are not implemented.
"""

import copy
import inspect
from typing import Any, Dict, Mapping

from .model.cam_dec import CameraDec
from .model.cam_enc import CameraEnc
from .model.dualdpt import DualDPT
from .model.vision_transformer import DinoVisionTransformer

SECTIONS = ("backbone", "head", "cam_enc", "cam_dec")


def _preset(embed_dim: int, depth: int, num_heads: int, out_layers, alt_start: int, features: int,
            out_channels) -> Dict[str, Any]:
    return {
        "backbone": {
            "img_size": 518, "patch_size": 14, "embed_dim": embed_dim, "depth": depth,
            "num_heads": num_heads, "mlp_ratio": 4, "ffn_layer": "mlp", "num_register_tokens": 0,
            "init_values": 1.0, "qkv_bias": True, "proj_bias": True, "ffn_bias": True,
            "interpolate_offset": 0.1, "interpolate_antialias": False, "rope_freq": 100,
            "out_layers": list(out_layers), "alt_start": alt_start, "qknorm_start": alt_start,
            "rope_start": alt_start, "cat_token": True,
        },
        "head": {
            "dim_in": 2 * embed_dim, "patch_size": 14, "output_dim": 2, "activation": "exp",
            "conf_activation": "expp1", "features": features, "out_channels": list(out_channels),
            "pos_embed": True, "down_ratio": 1, "aux_pyramid_levels": 4, "aux_out1_conv_num": 5,
            "head_names": ["depth", "ray"],
        },
        "cam_enc": {"dim_out": embed_dim, "dim_in": 9, "trunk_depth": 4, "target_dim": 9,
                    "num_heads": 16, "mlp_ratio": 4, "init_values": 0.01},
        "cam_dec": {"dim_in": 2 * embed_dim},
    }


PRESETS: Dict[str, Dict[str, Any]] = {
    "da3-small": _preset(384, 12, 6, [5, 7, 9, 11], 4, 64, [48, 96, 192, 384]),
    "da3-base": _preset(768, 12, 12, [5, 7, 9, 11], 4, 128, [96, 192, 384, 768]),
    "da3-large": _preset(1024, 24, 16, [11, 15, 19, 23], 8, 256, [256, 512, 1024, 1024]),
}

_SECTION_CLASSES = {"backbone": DinoVisionTransformer, "head": DualDPT, "cam_enc": CameraEnc,
                    "cam_dec": CameraDec}


def _accepted(section: str) -> set:
    names = set(inspect.signature(_SECTION_CLASSES[section].__init__).parameters) - {"self"}
    return names | {"out_layers"} if section == "backbone" else names


def resolve_config(config: Mapping[str, Any]) -> Dict[str, Any]:
    """Validated deep copy of a DA3 config (or of the preset a ``{"model_name": ...}`` names).

    Raises ValueError naming the bad key: unknown section or key, missing ``backbone``/``head``/
    ``backbone.out_layers``, unknown preset, or both a ``model_name`` and explicit sections.
    """
    if not isinstance(config, Mapping):
        raise TypeError(f"a DA3 config must be a mapping, got {type(config).__name__}")
    cfg = copy.deepcopy(dict(config))
    if "model_name" in cfg:
        name = str(cfg.pop("model_name")).lower()
        if any(k in cfg for k in SECTIONS):
            raise ValueError("a DA3 config gives either model_name or explicit sections, not both")
        if name not in PRESETS:
            raise ValueError(f"DA3 preset {name!r} is not implemented; known: {sorted(PRESETS)}")
        cfg.update(copy.deepcopy(PRESETS[name]))
    unknown = sorted(set(cfg) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown DA3 config sections {unknown}; expected {list(SECTIONS)}")
    for section in ("backbone", "head"):
        if not isinstance(cfg.get(section), Mapping):
            raise ValueError(f"DA3 config needs a {section!r} section")
    if "out_layers" not in cfg["backbone"]:
        raise ValueError("DA3 config backbone.out_layers is missing")
    for section in SECTIONS:
        if cfg.get(section) is None:
            cfg[section] = None
            continue
        bad = sorted(set(cfg[section]) - _accepted(section))
        if bad:
            raise ValueError(f"unknown keys {bad} in DA3 config section {section!r}; "
                             f"accepted: {sorted(_accepted(section))}")
    return cfg
