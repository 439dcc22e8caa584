"""Step 2 of the Wan2.2-TI2V-5B DPO recipe: score the candidates' 3-D consistency (VGGT).

    python train_dpo/Wan2.2-TI2V-5B_lora/02_score.py
    python train_dpo/Wan2.2-TI2V-5B_lora/02_score.py --num_shards 8 --shard_index $i --devices cuda:$i  # 1 of 8 GPUs

Writes ``OUTPUT_JSON`` = ``INPUT_JSON`` + ``consistency_score``, ``motion_norm`` ... per video.
Every option of ``train_dpo/video_scorer.py`` can be given; those below are this model's defaults.
Shared code: ``train_dpo/video_scorer.py``.
"""

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from utils.scripts import script_constants  # noqa: E402

# --- configuration: what differs from the scorer's defaults (any option of --help can be set here as
# an UPPER_CASE constant, e.g. NUM_FRAMES = 16; a name that is no option stops the script with exit code 2) ---
INPUT_JSON = str(REPO_ROOT / "outputs" / "candidates" / "Wan2.2-TI2V-5B" / "groups.json")  # from 01_generate.py
OUTPUT_JSON = str(REPO_ROOT / "outputs" / "candidates" / "Wan2.2-TI2V-5B" / "groups_scored.json")


def main(argv=None) -> int:
    """Run the scorer with this script's constants as defaults, then ``argv`` (default ``sys.argv[1:]``;
    its flags win); returns the scorer's exit code (0 ok, 1 failure, 2 bad input)."""
    from train_dpo.video_scorer import main as scorer_main

    return scorer_main(argv, script_constants(globals()))


if __name__ == "__main__":
    sys.exit(main())
