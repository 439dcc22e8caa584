"""Step 3 of the CogVideoX-5B text-to-video DPO recipe: encode scored candidates to latents.

    python train_dpo/CogVideoX-5B_lora/03_encode.py
    python train_dpo/CogVideoX-5B_lora/03_encode.py \
        --input_json X.json --output_json Y.json --base_path DIR

49 frames 480x720 -> latents [13, 16, 60, 90]. Prompt embeddings [226, 4096] once per group. Writes
LATENT_DIR/<group>/*.safetensors and OUTPUT_JSON (= INPUT_JSON + ``latent_path`` per video,
``condition_path`` per group). Resumable: re-running skips files that exist and load. Shared code:
``train_dpo/encode.py`` (JSON, files, resume), ``encode_cogvideox.py`` (encoder), ``encode_cli.py``.
"""

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from utils.scripts import script_constants  # noqa: E402

# --- configuration: what differs from the shared defaults (any option of --help can be set here as
# an UPPER_CASE constant; a name that is no option stops the script with exit code 2) ---
BASE_MODEL = "THUDM/CogVideoX-5b"
INPUT_JSON = str(
    REPO_ROOT / "outputs" / "candidates" / "CogVideoX-5B" / "groups_scored.json"
)  # from 02_score.py
OUTPUT_JSON = str(REPO_ROOT / "outputs" / "candidates" / "CogVideoX-5B" / "groups_encoded.json")


def main(argv=None) -> int:
    """Run with ``argv`` (default ``sys.argv[1:]``); returns the exit code (0 ok, 2 bad input)."""
    from train_dpo.encode_cli import run_encode_cli

    return run_encode_cli(argv, script_constants(globals()), description=__doc__.split("\n\n")[0])


if __name__ == "__main__":
    sys.exit(main())
