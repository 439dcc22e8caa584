"""Step 1 of the CogVideoX1.5-5B text-to-video DPO recipe: generate candidate videos (text-to-video, 4 seeds per prompt).

    python train_dpo/CogVideoX1.5-5B_lora/01_generate.py                       # everything, one process
    python train_dpo/CogVideoX1.5-5B_lora/01_generate.py --num_shards 8 --shard_index $i --gpu_id $i   # one of 8 GPUs
    python train_dpo/CogVideoX1.5-5B_lora/01_generate.py --num_shards 8 --merge  # then join the shard JSONs

Writes ``OUTPUT_DIR/<group_id>/seed_<seed>.mp4`` and ``OUTPUT_DIR/groups.json`` (see
``generate/candidates.py`` for the format and every default). Re-running resumes: finished videos are kept.
``PROMPTS_JSON`` defaults to ``data/dl3dv_captions_1K.json``: the DL3DV scene captions released
by the VideoGPA authors (``{scene: caption}``); any prompts JSON of the inference scripts works too.
"""

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from utils.scripts import script_constants  # noqa: E402

# --- configuration: what differs from the shared defaults (any option of --help can be set here as
# an UPPER_CASE constant; a name that is no option stops the script with exit code 2) ---
BASE_MODEL = "THUDM/CogVideoX1.5-5B"
PROMPTS_JSON = str(REPO_ROOT / "data" / "dl3dv_captions_1K.json")
OUTPUT_DIR = str(REPO_ROOT / "outputs" / "candidates" / "CogVideoX1.5-5B")  # writes OUTPUT_DIR/groups.json
FPS = 16  # frames: the checkpoint's 81 at 768x1360


def main(argv=None) -> int:
    """Run with ``argv`` (default ``sys.argv[1:]``); returns the exit code (0 ok, 2 bad configuration)."""
    from generate.candidates_cli import main as candidates_main

    return candidates_main(argv, script_constants(globals()))


if __name__ == "__main__":
    sys.exit(main())
