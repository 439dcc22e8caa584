"""Load VGGT weights from the Hugging Face Hub, a saved folder, or a single weights file.

On-disk format (as ``huggingface_hub.PyTorchModelHubMixin.save_pretrained`` writes it and as the
``facebook/VGGT-1B`` repo holds it): ``config.json`` (keyword arguments of :class:`VGGT`) +
``model.safetensors`` (or ``model.pt``), parameter names as in facebookresearch/vggt.
"""

import inspect
import logging
import os
import warnings
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch

from utils.weights import load_checked_state_dict, read_model_config

from .models import VGGT

logger = logging.getLogger(__name__)

DEFAULT_SOURCE = "facebook/VGGT-1B"
_IGNORED_PREFIXES = ("track_head.",)  # released weights of the (unimplemented) tracking head
_IGNORED_CONFIG_KEYS = ("enable_track", "enable_track_head")


def _read_weights(path: Path) -> Dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    sd = torch.load(str(path), map_location="cpu", weights_only=True)
    for key in ("model", "state_dict"):  # training checkpoints wrap the state dict
        if isinstance(sd, dict) and isinstance(sd.get(key), dict) and "aggregator.camera_token" not in sd:
            sd = sd[key]
    if not isinstance(sd, dict):
        raise ValueError(f"{path} does not contain a state dict")
    return sd


def _read_config(config) -> dict:
    return read_model_config(config, "VGGT")


def _resolve(source: str, config) -> Tuple[Path, dict, str]:
    """Return (weights file, config dict, description of the source)."""
    path = Path(os.path.expanduser(str(source)))
    if path.is_dir():
        weights = next((path / n for n in ("model.safetensors", "model.pt") if (path / n).is_file()), None)
        if weights is None:
            raise FileNotFoundError(f"no model.safetensors or model.pt in VGGT folder {path}")
        cfg = _read_config(path / "config.json") if (path / "config.json").is_file() else {}
        cfg.update(_read_config(config))
        return weights, cfg, str(path)
    if path.is_file():
        return path, _read_config(config), str(path)
    from utils.hub import check_hub_model, looks_like_local_path

    if looks_like_local_path(source):
        raise FileNotFoundError(f"VGGT weights not found: {source}")
    # cached / offline / unreachable, said plainly and at once

    check_hub_model(str(source), ("config.json", "model.safetensors", "model.pt"), "VGGT model", "--vggt_model")

    from huggingface_hub import hf_hub_download
    try:
        from huggingface_hub.errors import (EntryNotFoundError, HFValidationError,
                                            LocalEntryNotFoundError, RepositoryNotFoundError)
    except ImportError:  # older huggingface_hub
        from huggingface_hub.utils import (EntryNotFoundError, HFValidationError,
                                           LocalEntryNotFoundError, RepositoryNotFoundError)

    def download(filename: str, optional: bool = False):
        try:
            return hf_hub_download(str(source), filename)
        except LocalEntryNotFoundError as e:  # offline and not cached (subclass of EntryNotFound)
            if optional:  # e.g. only model.pt is cached: try the next file instead of failing
                return None
            raise FileNotFoundError(f"VGGT source {source!r} is not a local path and {filename} could "
                                    "not be fetched from the Hub (offline and not cached?)") from e
        except (RepositoryNotFoundError, HFValidationError) as e:
            raise FileNotFoundError(f"VGGT source {source!r} is neither a local path nor a Hub repo") from e
        except EntryNotFoundError:
            if optional:
                return None
            raise

    cfg_file = download("config.json", optional=True)
    cfg = _read_config(cfg_file) if cfg_file else {}
    weights = download("model.safetensors", optional=True) or download("model.pt")
    cfg.update(_read_config(config))
    return Path(weights), cfg, f"hf://{source}"


def load_vggt(source: Union[str, os.PathLike] = DEFAULT_SOURCE, device: Union[str, torch.device] = "cpu",
              dtype: torch.dtype = torch.float32, config: Optional[Union[dict, str, os.PathLike]] = None
              ) -> VGGT:
    """Build :class:`VGGT` and load weights; returns the model in eval mode on ``device``/``dtype``.

    Args:
        source: a Hub repo id (default ``"facebook/VGGT-1B"``; downloads ``config.json`` and
            ``model.safetensors``, falling back to ``model.pt``), a local folder holding
            ``config.json`` + ``model.safetensors``/``model.pt``, or one ``.safetensors``/``.pt``
            file (``.pt`` read with ``torch.load(weights_only=True)``).
        config: dict or JSON path of :class:`VGGT` kwargs; overrides/replaces the folder's
            ``config.json``; a bare file without ``config`` is taken to be VGGT-1B.
        dtype: parameter dtype (float32 recommended; use ``autocast_dtype`` in forward for speed).

    Parameters are frozen (``requires_grad=False``); the model is built on the meta device and
    the checkpoint tensors are assigned directly (no random init of 1.2B parameters).
    ``track_head.*`` weights are skipped and reported via ``warnings``/``logging``; unknown
    config keys are dropped with a warning.
    Raises FileNotFoundError (missing file/folder/repo), KeyError (missing or unexpected
    parameters, naming the first few and the count, and the source), ValueError (shape mismatch).
    """
    weights_path, cfg, where = _resolve(source, config)
    for key in _IGNORED_CONFIG_KEYS:
        if cfg.pop(key, False):
            logger.info("VGGT config %s=True ignored: track head not implemented", key)

    accepted = set(inspect.signature(VGGT.__init__).parameters) - {"self"}
    unknown = sorted(set(cfg) - accepted)
    if unknown:
        warnings.warn(f"VGGT config keys {unknown} from {where} are not understood and ignored", stacklevel=2)
        cfg = {k: v for k, v in cfg.items() if k in accepted}

    with torch.device("meta"):
        model = VGGT(**cfg)
    expected = model.state_dict()

    state = _read_weights(weights_path)
    ignored = sorted(k for k in state if k.startswith(_IGNORED_PREFIXES) and k not in expected)
    for k in ignored:
        del state[k]
    if ignored:
        msg = f"{len(ignored)} track_head.* tensors in {where} are unused (track head not implemented)"
        logger.info(msg)
        warnings.warn(msg, stacklevel=2)

    return load_checked_state_dict(model, state, "VGGT", where, device=device, dtype=dtype)
