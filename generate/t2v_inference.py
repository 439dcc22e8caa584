"""CogVideoX text-to-video inference, optionally with a VideoGPA LoRA adapter.

    python generate/t2v_inference.py "a camera orbits a stone gateway" \
        --lora_path checkpoints/VideoGPA-T2V-lora --output_dir outputs

Batch mode: ``--prompt_json prompts.json`` (``{"id": {"text_prompt": ...}}`` or a list) with
``--num_prompts N``. Writes ``<output_dir>/<prompt-slug>_seed<seed>.mp4``. Frame count and size
default to what the checkpoint was trained for (CogVideoX-5B: 49 frames 480x720; CogVideoX1.5-5B,
``--base_model THUDM/CogVideoX1.5-5B``: 81 frames 768x1360).

Wan2.2-TI2V-5B from text alone: ``--base_model Wan-AI/Wan2.2-TI2V-5B-Diffusers`` (121 frames
704x1280, 50 steps, guidance 5.0, 24 fps, Wan's negative prompt), with
``--lora_path checkpoints/VideoGPA-Wan2.2TI2V-lora`` at the released scale 0.2. See
``generate/inference_cli.py`` and ``generate/wan.py``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from generate.inference_cli import inference_main  # noqa: E402
from utils.scripts import script_constants  # noqa: E402

# --- configuration: what differs from the shared defaults (seed 42, 50 steps, guidance 6.0, 8 fps; any
# option of --help can be set here as an UPPER_CASE constant, e.g. SEED = 7, and the command line
# wins; a name that is no option stops the script with exit code 2) ---
BASE_MODEL = "THUDM/CogVideoX-5b"


def main(argv=None) -> int:
    """Run with ``argv`` (default ``sys.argv[1:]``); returns the exit code (0 ok, 1 some prompts failed, 2 bad input)."""
    return inference_main("t2v", argv, script_constants(globals()))


if __name__ == "__main__":
    sys.exit(main())
