"""Arms of an evaluation and the prompt items every arm generates (the paired design).

An *arm* is a name plus an adapter: ``original`` (the base model, no adapter) and any number of
adapter arms, e.g. ``dpo=checkpoints/VideoGPA-T2V-lora`` (released), ``sft=outputs/sft/final_lora``,
``mine=outputs/dpo/CogVideoX-5B_lora/final_lora``. Every adapter arm runs at each LoRA weight of
``LORA_WEIGHTS``. Every arm generates the same prompts with the same seeds, so each video of an
adapter arm has a partner of ``original`` with the same prompt and initial noise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Mapping

from evaluation.layout import ARM_NAME_RE, ORIGINAL, VideoKey, prompt_id_for

__all__ = ["Arm", "PromptItem", "ArmSpecError", "parse_arm_specs", "adapter_error", "arm_video_keys", "load_prompt_items"]


class ArmSpecError(ValueError):
    """A malformed ``--arm NAME=PATH`` specification (bad name, duplicate, ``original`` with an adapter)."""


@dataclass(frozen=True)
class Arm:
    """One arm: ``name`` and its adapter folder (None for ``original``); ``weights``: LoRA scales."""

    name: str
    adapter: str | None
    weights: tuple[float, ...] = (0.0,)

    @property
    def is_original(self) -> bool:
        return self.name == ORIGINAL


@dataclass(frozen=True)
class PromptItem:
    """One prompt of the evaluation: ``prompt_id`` (video folder), ``key`` (prompt file key), text,
    first frame (I2V) and ``error`` (a bad prompt entry: recorded, not generated)."""

    prompt_id: str
    key: str
    prompt: str
    image_path: str | None = None
    error: str | None = None


def parse_arm_specs(specs: Mapping[str, str | None] | Iterable[str], weights: Iterable[float]) -> tuple[list[Arm], list[str]]:
    """Arms from ``{name: adapter or None}`` or ``["name=path", "name="]`` (later entries win).

    ``original`` is always the first arm. An adapter arm whose path is None or empty is skipped,
    with a message in the returned list (so ``SFT = None`` in the constants means "not run").

    Returns:
        ``(arms, skipped_messages)``.

    Raises:
        ArmSpecError: a spec without ``=``, a name that is not ``[a-z][a-z0-9_]*``, or ``original=PATH``.
    """
    pairs: dict[str, str | None] = {}
    if isinstance(specs, Mapping):
        pairs.update(specs)
    else:
        for s in specs:
            if "=" not in s:
                raise ArmSpecError(f"arm {s!r}: expected NAME=ADAPTER_PATH (e.g. dpo=checkpoints/VideoGPA-T2V-lora)")
            name, path = s.split("=", 1)
            pairs[name.strip()] = path.strip() or None
    ws = tuple(float(w) for w in weights)
    if not ws:
        raise ArmSpecError("LORA_WEIGHTS is empty")
    arms, skipped = [Arm(ORIGINAL, None)], []
    for name, path in pairs.items():
        if not ARM_NAME_RE.match(name):
            raise ArmSpecError(f"arm name {name!r} must match [a-z][a-z0-9_]* (it becomes part of file names)")
        if name == ORIGINAL:
            if path:
                raise ArmSpecError("the 'original' arm is the base model; it takes no adapter")
            continue
        if not path:
            skipped.append(f"arm {name!r} skipped: no adapter path (give --arm {name}=PATH)")
            continue
        arms.append(Arm(name, str(path), ws))
    return arms, skipped


def adapter_error(arm: Arm) -> str | None:
    """None when the arm's adapter folder is complete (``utils.lora.validate_adapter_dir``), else the reason."""
    from utils.lora import LoraAdapterError, validate_adapter_dir

    if arm.adapter is None:
        return None
    try:
        validate_adapter_dir(arm.adapter)
    except LoraAdapterError as e:
        return f"arm {arm.name!r}: {e}"
    return None


def arm_video_keys(arm: Arm, items: Iterable["PromptItem"], seeds: Iterable[int]) -> list[tuple[VideoKey, "PromptItem"]]:
    """``[(VideoKey, item)]`` of every video of ``arm``: each LoRA weight x prompt item x seed
    (weight 0.0 for ``original``), in that order."""
    items, seeds = list(items), [int(s) for s in seeds]
    return [(VideoKey(it.prompt_id, seed, arm.name, 0.0 if arm.is_original else float(w)), it)
            for w in arm.weights for it in items for seed in seeds]


def load_prompt_items(prompts_json: str | os.PathLike, num_prompts: int | None, need_image: bool) -> list[PromptItem]:
    """Prompt items from a prompts/captions JSON (``generate.prompts.load_prompt_entries`` formats).

    Bad entries come back with ``error`` set (naming the file and key). Two keys mapping to the same
    ``prompt_id`` are an error on the second (whose id gets its index appended).

    Raises:
        utils.io_utils.JSONInputError: missing or malformed file.
    """
    from generate.prompts import load_prompt_entries

    items, seen = [], set()
    for i, e in enumerate(load_prompt_entries(prompts_json, num_prompts, need_image=need_image)):
        pid = prompt_id_for(e.key)
        err = e.error
        if pid in seen:
            err = err or f"{prompts_json} entry {e.key!r}: prompt id {pid!r} already used by another entry"
            pid = f"{pid}-{i:05d}"  # keep the row keys of the first entry intact
        seen.add(pid)
        items.append(PromptItem(pid, e.key, e.prompt or "", e.image_path, err))
    return items
