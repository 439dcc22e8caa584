"""Step 1 of the Wan2.2-TI2V-5B DPO recipe: generate candidate videos (text+image-to-video, 4 seeds).

    python train_dpo/Wan2.2-TI2V-5B_lora/01_generate.py                       # everything, one process
    python train_dpo/Wan2.2-TI2V-5B_lora/01_generate.py --num_shards 8 --shard_index $i --gpu_id $i
    python train_dpo/Wan2.2-TI2V-5B_lora/01_generate.py --num_shards 8 --merge  # then join the shard JSONs

Writes ``OUTPUT_DIR/<group_id>/seed_<seed>.mp4`` and ``OUTPUT_DIR/groups.json`` (see
``generate/candidates.py``). ``PROMPTS_JSON``: ``{"id": {"text_prompt": "...", "image_prompt":
"images/x.png"}}``. Defaults: the released generation (upstream ``generate/Wan2.2-TI2V-5B.py``: 50
steps, guidance 5.0, flow shift 5.0 -- the scheduler config's --, 24 fps) at the model card's 121
frames of 704 x 1280 (the released script's ``--frame_num`` default is 81).
"""

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from utils.scripts import script_constants  # noqa: E402

# --- configuration: what differs from the shared defaults (any option of --help can be set here as
# an UPPER_CASE constant; a name that is no option stops the script with exit code 2) ---
BASE_MODEL = "Wan-AI/Wan2.2-TI2V-5B-Diffusers"
KIND = "i2v"
PROMPTS_JSON = str(REPO_ROOT / "data" / "i2v_prompts.json")
OUTPUT_DIR = str(REPO_ROOT / "outputs" / "candidates" / "Wan2.2-TI2V-5B")
NUM_FRAMES = 121  # model card: 121 frames at 24 fps (released --frame_num default: 81)
HEIGHT = 704
WIDTH = 1280
GUIDANCE_SCALE = 5.0
FPS = 24


def main(argv=None) -> int:
    """Run with ``argv`` (default ``sys.argv[1:]``); returns the exit code (0 ok, 2 bad configuration)."""
    from generate.candidates_cli import main as candidates_main

    return candidates_main(argv, script_constants(globals()))


if __name__ == "__main__":
    sys.exit(main())
