"""CogVideoX image-to-video inference, optionally with a VideoGPA LoRA adapter.

    python generate/i2v_inference.py "the camera slowly pushes in" first_frame.png \
        --lora_path checkpoints/VideoGPA-I2V-lora --output_dir outputs

Batch mode: ``--prompt_json prompts.json`` (``{"id": {"text_prompt": ..., "image_prompt": ...}}`` or
a list; image paths relative to the JSON file) with ``--num_prompts N``. Writes
``<output_dir>/<image-name>_seed<seed>.mp4``. The image is centre-cropped to the video's aspect
ratio and resized. CogVideoX-5B-I2V has a learned position table: 49 frames at 480x720 only.

Wan2.2-TI2V-5B with a first frame: ``--base_model Wan-AI/Wan2.2-TI2V-5B-Diffusers``
(``WanImageToVideoPipeline``: the image is the clean first latent frame; 121 frames 704x1280,
50 steps, guidance 5.0, 24 fps), with ``--lora_path checkpoints/VideoGPA-Wan2.2TI2V-lora`` at the
released scale 0.2. See ``generate/inference_cli.py`` and ``generate/wan.py``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from generate.inference_cli import inference_main  # noqa: E402
from utils.scripts import script_constants  # noqa: E402

# --- configuration: what differs from the shared defaults (seed 42, 50 steps, guidance 6.0, 8 fps; any
# option of --help can be set here as an UPPER_CASE constant, e.g. SEED = 7, and the command line
# wins; a name that is no option stops the script with exit code 2) ---
BASE_MODEL = "THUDM/CogVideoX-5b-I2V"


def main(argv=None) -> int:
    """Run with ``argv`` (default ``sys.argv[1:]``); returns the exit code (0 ok, 1 some prompts failed, 2 bad input)."""
    return inference_main("i2v", argv, script_constants(globals()))


if __name__ == "__main__":
    sys.exit(main())
