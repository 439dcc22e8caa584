"""Step 1 of the CogVideoX1.5-5B text-to-video DPO recipe: generate candidate videos (text-to-video, 4 seeds per prompt).

    python train_dpo/CogVideoX1.5-5B_lora/01_generate.py                       # everything, one process
    python train_dpo/CogVideoX1.5-5B_lora/01_generate.py --num_shards 8 --shard_index $i --gpu_id $i   # one of 8 GPUs
    python train_dpo/CogVideoX1.5-5B_lora/01_generate.py --num_shards 8 --merge  # then join the shard JSONs

Writes ``OUTPUT_DIR/<group_id>/seed_<seed>.mp4`` and ``OUTPUT_DIR/groups.json`` (see
``generate/candidates.py`` for the format). Re-running resumes: finished videos are kept.
``PROMPTS_JSON`` defaults to ``data/dl3dv_captions_1K.json``: the DL3DV scene captions released
by the VideoGPA authors (``{scene: caption}``); any prompts JSON of the inference scripts works too.
"""

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from generate.candidates import build_arg_parser, run_from_args  # noqa: E402

from utils.scripts import script_defaults  # noqa: E402

# --- configuration (every value can be overridden on the command line) ---
BASE_MODEL = "THUDM/CogVideoX1.5-5B"
KIND = "t2v"
PROMPTS_JSON = str(REPO_ROOT / "data" / "dl3dv_captions_1K.json")
OUTPUT_DIR = str(REPO_ROOT / "outputs" / "candidates" / "CogVideoX1.5-5B")
NUM_SEEDS = 4
SEED_START = 0
NUM_FRAMES = None  # None = the checkpoint's: 81
HEIGHT = None  # None = the checkpoint's: 768
WIDTH = None  # None = the checkpoint's: 1360
NUM_INFERENCE_STEPS = 50
GUIDANCE_SCALE = 6.0
FPS = 16


def main(argv=None) -> int:
    """Run with ``argv`` (default ``sys.argv[1:]``); returns the exit code (0 ok, 2 bad configuration)."""
    defaults = script_defaults(globals())
    parser = build_arg_parser(defaults, description=__doc__.split("\n\n")[0])
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
