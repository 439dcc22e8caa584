"""Evaluate adapters against the base model (the VideoGPA replication run), with paired statistics.

    python evaluate.py                                            # tiny preset: CPU, about a minute
    python evaluate.py --preset cogvideox-5b                      # released T2V adapter vs CogVideoX-5B (GPU)
    python evaluate.py --preset cogvideox-5b --arm dpo=checkpoints/VideoGPA-T2V-lora \\
        --arm mine=outputs/dpo/CogVideoX-5B_lora/final_lora --lora_weights 0.5,1.0
    python evaluate.py --preset cogvideox-5b-i2v --images_dir path/to/first_frames
    python evaluate.py --preset cogvideox-5b-i2v --score_only --videos_dir output/replicate --output_dir runs/eval_released
    python evaluate.py --summarize path/to/scores.csv --output_dir runs/summary
    for i in 0 1 2 3; do python evaluate.py --preset cogvideox-5b --num_shards 4 --shard_index $i --gpu_id $i & done; wait
    srun --ntasks 4 python evaluate.py --preset cogvideox-5b      # shards from the launcher (torchrun too)
    python evaluate.py --preset cogvideox-5b --num_shards 4 --merge

Every arm (``original`` = the base model, plus one arm per adapter, each at every LoRA weight of
``LORA_WEIGHTS``) generates the same prompts with the same seeds; every video is scored with the
reprojection metrics (mse, psnr, ssim, lpips, consistency_score), mvcs, epipolar (SIFT Sampson
distance), temporal_lpips and flow_warp_error. Outputs in ``OUTPUT_DIR``: ``videos/<prompt_id>/
seed_<seed>_<arm>_w<weight>.mp4`` (released naming), ``scores.csv`` (one row per video),
``summary.md`` / ``summary.json`` (per arm means with 95 % bootstrap CIs; per arm vs original:
paired mean difference with CI, win rate, Wilcoxon p and Holm-adjusted p) and
``paired_diff_<metric>.png``. Re-running resumes (existing videos and rows are kept) when the
settings match ``scores.settings.json`` (else exit 2; ``--overwrite`` starts over). See
``evaluation/run.py`` for the steps and ``README.md`` ("Evaluate") for reading the summary.
"""

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO_ROOT))

from evaluation.run import main as run_main  # noqa: E402
from utils.scripts import script_constants  # noqa: E402

# --- configuration (every value can be overridden on the command line; None = the preset's value;
# any option of --help can be set here as an UPPER_CASE constant, a name that is no option exits 2) ---
PRESET = "tiny"  # tiny (CPU demo) | cogvideox-5b | cogvideox-5b-i2v | cogvideox1.5-5b (released settings)
OUTPUT_DIR = None  # None: runs/evaluate/<preset>
VIDEOS_DIR = None  # None: <OUTPUT_DIR>/videos (with --score_only: any folder of <prompt_id>/seed_*.mp4)
BASE_MODEL = None  # e.g. THUDM/CogVideoX-5b
KIND = None  # t2v | i2v
PROMPTS_JSON = None  # captions JSON {key: caption} (data/dl3dv_captions_1K.json) or prompts JSON
IMAGES_DIR = None  # I2V: first frames (+ captions.json), see data_prep/generate_i2v_prompts.py
NUM_PROMPTS = None  # released: 100
SEEDS = None  # released: [456]
LORA_WEIGHTS = None  # LoRA scales (multipliers of the trained alpha/r) of every adapter arm, e.g. [0.2, 0.5, 1.0];
# None: the preset's ([1.0]; cogvideox1.5-5b: [0.1] = the released inference's absolute scaling 0.2)
# adapter arms: name -> adapter folder; None = skipped (unless the preset gives one); --arm NAME=PATH overrides
# (sft: 04_train.py --objective sft; dpo_epipolar: --metric_name epipolar; README "Ablation arms")
ARMS = {"dpo": None, "sft": None, "dpo_epipolar": None}
NUM_INFERENCE_STEPS = None  # released: 50
GUIDANCE_SCALE = None  # released: 6.0
FPS = None  # released: 8
NUM_FRAMES = None  # None: the checkpoint's (49; CogVideoX1.5: 81)
HEIGHT = None
WIDTH = None
SCORE_NUM_FRAMES = None  # frames per video for the geometry metrics (released: 10)
IMAGE_SIZE = None  # square side of those frames (None: 504 for DA3, 518 for VGGT)
CONF_THRES = None  # depth-confidence percentile filter (released: 0)
POINTS_SOURCE = None  # world points: "point_head" (released reward, real presets) | "depth" (tiny preset:
# the tiny random VGGT's point head covers ~0.1 % of the pixels)
MASK_UNCOVERED = False  # released: holes of the reprojection are black and count
LPIPS_WEIGHT = 1.0  # consistency_score = mse + LPIPS_WEIGHT * lpips (released: 1)
GEOMETRY_MODEL = None  # da3 (released benchmark) | vggt
GEOMETRY_WEIGHTS = None  # None: the backbone's hub id; or a local folder or weights file
LPIPS_VGG_WEIGHTS = None  # None: $VIDEOGPA_LPIPS_VGG_WEIGHTS or download (see README)
LPIPS_LIN_WEIGHTS = None
DEVICE = None  # scoring device; None: CUDA when available
BOOTSTRAP_RESAMPLES = None  # 10,000 for the real presets
TINY_ROOT = str(REPO_ROOT / "checkpoints" / "tiny")


def main(argv=None) -> int:
    """Run with ``argv`` (default ``sys.argv[1:]``); returns the exit code (0 ok, 2 bad input, 1 failure)."""
    return run_main(argv, script_constants(globals()))


if __name__ == "__main__":
    sys.exit(main())
