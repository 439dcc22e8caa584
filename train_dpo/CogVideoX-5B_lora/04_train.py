"""Step 4 of the CogVideoX-5B text-to-video DPO recipe: Diffusion-DPO LoRA training.

    python train_dpo/CogVideoX-5B_lora/04_train.py                            # 1 GPU / all GPUs
    python train_dpo/CogVideoX-5B_lora/04_train.py --devices 8 --num_nodes 2  # DDP, per node
    python train_dpo/CogVideoX-5B_lora/04_train.py --resume auto              # continue a run

Writes OUTPUT_DIR/checkpoint-<step>/ and OUTPUT_DIR/final_lora/ (PEFT adapters in the format of the
released VideoGPA LoRAs: load with ``generate/t2v_inference.py --lora_path``),
OUTPUT_DIR/lightning/last.ckpt (resume), CSV + TensorBoard logs. Defaults: the released VideoGPA
training settings (upstream Hongyang-Du/VideoGPA ``train_dpo/CogVideoX-5B_lora/03_train.py``;
the README lists every default next to the released value). GLOBAL_BATCH pairs per optimiser
step on any number of GPUs: the gradient accumulation is GLOBAL_BATCH / (GPUs x nodes x BATCH_SIZE).
Every setting and its default: ``--help`` (``train_dpo/train_cli.py``, ``train_dpo/config.py``).
Shared code: ``train_dpo/train.py`` (training), ``train_dpo/families/cogvideox.py`` (model),
``train_dpo/pairs.py`` (pairs), ``train_dpo/loss.py`` (loss).
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
TRAIN_JSON = str(
    REPO_ROOT / "outputs" / "candidates" / "CogVideoX-5B" / "groups_encoded.json"
)  # from 03_encode.py
OUTPUT_DIR = str(REPO_ROOT / "outputs" / "dpo" / "CogVideoX-5B_lora")


def main(argv=None) -> int:
    """Run with ``argv`` (default ``sys.argv[1:]``); returns the exit code (0 ok, 2 bad input)."""
    from train_dpo.train_cli import run_train_cli

    return run_train_cli(argv, script_constants(globals()), description=__doc__.split("\n\n")[0])


if __name__ == "__main__":
    sys.exit(main())
