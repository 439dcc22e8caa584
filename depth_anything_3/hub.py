"""Load DA3 weights from the Hugging Face Hub, a saved folder, or a single weights file.

On-disk format (as the reference's ``DepthAnything3.save_pretrained`` writes it and as the
``depth-anything/DA3-LARGE`` repo holds it): ``config.json`` + ``model.safetensors`` with the
net's parameters under ``model.``. ``config.json`` is either a config in the schema of
:mod:`depth_anything_3.config` or ``{"model_name": "da3-large", ...}`` naming a preset.
``save_pretrained`` drops the 3 aliases of the aux head's shared LayerNorm
(``model.head.scratch.output_conv2_aux.{1,2,3}.2.*``); they are filled from ``...0.2.*``.
"""

import logging
import os
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import torch

from utils.hub import looks_like_local_path
from utils.weights import load_checked_state_dict, read_model_config

from .config import SECTIONS
from .model.depth_anything3 import DepthAnything3

logger = logging.getLogger(__name__)

DEFAULT_SOURCE = "depth-anything/DA3-LARGE"  # VideoGPA writes "depth-anything/DA3-Large"
DEFAULT_PRESET = "da3-large"
WEIGHTS_NAMES = ("model.safetensors", "model.pt")
PREFIX = "model."


def _read_config(config) -> dict:
    return read_model_config(config, "DA3")


def _read_weights(path: Path) -> Dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not contain a state dict")
    return state


def _resolve(source, config) -> Tuple[Path, dict, str]:
    """(weights file, config dict, description of the source)."""
    path = Path(os.path.expanduser(str(source)))
    if path.is_dir():
        weights = next((path / n for n in WEIGHTS_NAMES if (path / n).is_file()), None)
        if weights is None:
            raise FileNotFoundError(f"no {' or '.join(WEIGHTS_NAMES)} in DA3 folder {path}")
        cfg = _read_config(path / "config.json") if (path / "config.json").is_file() else {}
        return weights, _read_config(config) or cfg, str(path)
    if path.is_file():
        return path, _read_config(config), str(path)
    text = str(source)
    if looks_like_local_path(text):
        raise FileNotFoundError(f"DA3 weights not found: {source}")

    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HFValidationError, RepositoryNotFoundError

    def download(filename: str, optional: bool):
        try:
            return hf_hub_download(text, filename)
        except (RepositoryNotFoundError, HFValidationError) as e:
            raise FileNotFoundError(f"DA3 source {source!r} is neither a local path nor a Hub repo") from e
        except EntryNotFoundError as e:  # includes offline-and-not-cached
            if optional:
                return None
            raise FileNotFoundError(f"{filename} of DA3 repo {source!r} could not be fetched "
                                    "(missing, or offline and not cached)") from e

    cfg_file = download("config.json", optional=True)
    weights = download(WEIGHTS_NAMES[0], optional=True) or download(WEIGHTS_NAMES[1], optional=False)
    return Path(weights), _read_config(config) or _read_config(cfg_file), f"hf://{source}"


def _hub_config(cfg: dict, where: str) -> dict:
    """Keep the config sections / ``model_name``; default to DA3-Large; warn about other keys."""
    if not cfg:
        logger.info("no DA3 config for %s: assuming %s", where, DEFAULT_PRESET)
        return {"model_name": DEFAULT_PRESET}
    known = set(SECTIONS) | {"model_name"}
    extra = sorted(set(cfg) - known)
    if extra:
        warnings.warn(f"DA3 config keys {extra} from {where} are not model settings and are ignored",
                      stacklevel=3)
    cfg = {k: v for k, v in cfg.items() if k in known}
    return cfg if any(k in cfg for k in SECTIONS) else {"model_name": cfg.get("model_name", DEFAULT_PRESET)}


def tied_parameter_names(model: torch.nn.Module) -> List[List[str]]:
    """Groups (>= 2 names) of state-dict names that refer to one shared parameter, in module order."""
    groups: Dict[int, List[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(p), []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def load_da3(source: Union[str, os.PathLike] = DEFAULT_SOURCE, device: Union[str, torch.device] = "cpu",
             dtype: torch.dtype = torch.float32, config: Optional[Union[dict, str, os.PathLike]] = None
             ) -> DepthAnything3:
    """Build :class:`DepthAnything3` and load weights; returns it frozen, in eval mode, on ``device``.

    Args:
        source: a Hub repo id (default ``"depth-anything/DA3-LARGE"``; downloads ``config.json``
            and ``model.safetensors``), a local folder with ``model.safetensors`` (or ``model.pt``)
            and optionally ``config.json``, or one ``.safetensors`` / ``.pt`` file.
        config: dict or JSON path; replaces the folder's / repo's ``config.json``. Without any
            config the model is DA3-Large.
        dtype: parameter dtype (float32 recommended; pass ``autocast_dtype`` to forward for speed).

    Weights may carry the hub's ``model.`` prefix or none. The model is built on the meta device
    and the checkpoint tensors are assigned (no random init).
    Raises FileNotFoundError (missing file / folder / repo), ValueError (bad config, shape
    mismatch, differing copies of a tied parameter), KeyError (missing or unexpected weights,
    naming the first few, the count and the source).
    """
    weights_path, cfg, where = _resolve(source, config)
    with torch.device("meta"):
        model = DepthAnything3(_hub_config(cfg, where))

    state = _read_weights(weights_path)
    if state and not any(k.startswith(PREFIX) for k in state):
        state = {PREFIX + k: v for k, v in state.items()}  # saved from the bare net
    for group in tied_parameter_names(model):
        present = [n for n in group if n in state]
        if not present:
            continue
        for n in present[1:]:
            if not torch.equal(state[n], state[present[0]]):
                raise ValueError(f"DA3 weights from {where}: tied parameters {present[0]} and {n} differ")
        for n in group:
            state.setdefault(n, state[present[0]])

    return load_checked_state_dict(model, state, "DA3", where, device=device, dtype=dtype)
