"""Convert a DL3DV-style captions JSON (``{scene key: caption}``) into a prompts JSON.

Usage::

    python data_prep/captions_to_prompts.py ../shared/data/dl3dv_captions_1K.json prompts.json \
        --num_prompts 100 --seed 0 [--add_motion]

Output: ``{"<id>": {"text_prompt": caption, "source_key": scene key}}`` (see ``data_prep.prompts``),
written atomically. Empty or non-string captions are skipped with a warning naming the key.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from data_prep.prompts import prompt_id, with_motion, write_prompts_main  # noqa: E402
from utils.io_utils import JSONInputError, read_json  # noqa: E402

logger = logging.getLogger("captions_to_prompts")


def captions_to_prompts(
    captions: dict, num_prompts: int | None = None, seed: int | None = None, add_motion: bool = False
) -> dict:
    """Turn ``{key: caption}`` into ``{id: {"text_prompt", "source_key"}}``.

    Args:
        captions: the captions mapping; keys are scene paths, values caption strings.
        num_prompts: keep at most this many (after optional shuffling); ``None`` keeps all.
        seed: shuffle the keys with this seed first; ``None`` keeps the file's order.
        add_motion: append a camera-motion phrase (cycling, see ``data_prep.prompts``).
    Raises:
        JSONInputError: ``captions`` is not a JSON object.
    """
    if not isinstance(captions, dict):
        raise JSONInputError(f"captions JSON must be an object {{key: caption}}, got {type(captions).__name__}")
    keys = list(captions)
    if seed is not None:
        random.Random(seed).shuffle(keys)
    out: dict = {}
    for key in keys:
        if num_prompts is not None and len(out) >= num_prompts:
            break
        text = captions[key]
        if not isinstance(text, str) or not text.strip():
            logger.warning("skipping caption %r: empty or not a string", key)
            continue
        text = " ".join(text.split())
        if add_motion:
            text = with_motion(text, len(out))
        out[prompt_id(key)] = {"text_prompt": text, "source_key": key}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("captions_json")
    p.add_argument("output_json")
    p.add_argument("--num_prompts", type=int, default=None)
    p.add_argument("--seed", type=int, default=None, help="shuffle with this seed before taking --num_prompts")
    p.add_argument("--add_motion", action="store_true", help="append a camera-motion phrase to each prompt")
    args = p.parse_args(argv)
    return write_prompts_main(
        lambda: captions_to_prompts(read_json(args.captions_json), args.num_prompts, args.seed, args.add_motion),
        args.output_json,
    )


if __name__ == "__main__":
    sys.exit(main())
