"""Step 2 of the CogVideoX1.5-5B text-to-video DPO recipe: score the candidates for 3-D consistency.

    python train_dpo/CogVideoX1.5-5B_lora/02_score.py
    python train_dpo/CogVideoX1.5-5B_lora/02_score.py --devices cuda:0,cuda:1 --extra_metrics epipolar

Reads INPUT_JSON (the groups JSON of 01_generate.py) and writes OUTPUT_JSON: per video
``consistency_score`` (VGGT reprojection MSE + LPIPS, lower = more 3-D consistent), motion and the
other keys of ``train_dpo/video_scorer.py``, whose options (``--help``) all apply; flags given here
win over the two paths below. Resumable: re-running skips videos already scored.
"""

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from utils.scripts import script_constants  # noqa: E402

# --- configuration: what differs from the scorer's defaults (any option of --help can be set here as
# an UPPER_CASE constant, e.g. NUM_FRAMES = 16; a name that is no option stops the script with exit code 2) ---
INPUT_JSON = str(
    REPO_ROOT / "outputs" / "candidates" / "CogVideoX1.5-5B" / "groups.json"
)  # from 01_generate.py
OUTPUT_JSON = str(REPO_ROOT / "outputs" / "candidates" / "CogVideoX1.5-5B" / "groups_scored.json")


def main(argv=None) -> int:
    """Run the scorer with this script's constants as defaults, then ``argv`` (default ``sys.argv[1:]``;
    its flags win); returns the scorer's exit code (0 ok, 1 failure, 2 bad input)."""
    from train_dpo.video_scorer import main as scorer_main

    return scorer_main(argv, script_constants(globals()))


if __name__ == "__main__":
    sys.exit(main())
