"""Step 2 of the Wan2.2-TI2V-5B DPO recipe: score the candidates' 3-D consistency (VGGT).

    python train_dpo/Wan2.2-TI2V-5B_lora/02_score.py
    python train_dpo/Wan2.2-TI2V-5B_lora/02_score.py --num_shards 8 --shard_index $i   # one of 8 GPUs

Writes ``OUTPUT_JSON`` = ``INPUT_JSON`` + ``consistency_score``, ``motion_norm`` ... per video.
Every option of ``train_dpo/video_scorer.py`` can be given; those below are this model's defaults.
Shared code: ``train_dpo/video_scorer.py``.
"""

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# --- configuration (every value can be overridden on the command line) ---
CANDIDATES = REPO_ROOT / "outputs" / "candidates" / "Wan2.2-TI2V-5B"
INPUT_JSON = str(CANDIDATES / "groups.json")  # from 01_generate.py
OUTPUT_JSON = str(CANDIDATES / "groups_scored.json")


def main(argv=None) -> int:
    """Run with ``argv`` (default ``sys.argv[1:]``); returns the scorer's exit code."""
    from train_dpo.video_scorer import main as score_main

    argv = list(sys.argv[1:] if argv is None else argv)
    return score_main(["--input_json", INPUT_JSON, "--output_json", OUTPUT_JSON, *argv])  # later options win


if __name__ == "__main__":
    sys.exit(main())
