"""Step 3 of the CogVideoX1.5-5B text-to-video DPO recipe: encode scored candidates to latents.

    python train_dpo/CogVideoX1.5-5B_lora/02_encode.py
    python train_dpo/CogVideoX1.5-5B_lora/02_encode.py \
        --input_json X.json --output_json Y.json --base_path DIR

81 frames 768x1360 -> latents [21, 16, 96, 170] (the trainer pads them to 22 frames for patch_size_t
2). Prompt embeddings [226, 4096] once per group. Writes LATENT_DIR/<group>/*.safetensors and
OUTPUT_JSON (= INPUT_JSON + ``latent_path`` per video, ``condition_path`` per group). Resumable: re-
running skips files that exist and load. Shared code: ``train_dpo/encode.py``.
"""

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from utils.scripts import script_defaults  # noqa: E402

# --- configuration (every value can be overridden on the command line) ---
BASE_MODEL = "THUDM/CogVideoX1.5-5B"
INPUT_JSON = str(
    REPO_ROOT / "outputs" / "candidates" / "CogVideoX1.5-5B" / "groups_scored.json"
)  # from video_scorer.py
OUTPUT_JSON = str(REPO_ROOT / "outputs" / "candidates" / "CogVideoX1.5-5B" / "groups_encoded.json")
BASE_PATH = None  # JSON paths are relative to this; None: the folder of INPUT_JSON
LATENT_DIR = "latents"  # relative paths are under BASE_PATH
NUM_FRAMES = 81
HEIGHT = 768
WIDTH = 1360
SEED = 0  # VAE posterior sampling (per video: derived from SEED and the video path)


def main(argv=None) -> int:
    """Run with ``argv`` (default ``sys.argv[1:]``); returns the exit code (0 ok, 2 bad input)."""
    from train_dpo.encode import run_encode_cli

    defaults = script_defaults(globals())
    return run_encode_cli(argv, defaults, description=__doc__.split("\n\n")[0])


if __name__ == "__main__":
    sys.exit(main())
