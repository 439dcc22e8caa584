"""Build an image-to-video prompts JSON from a folder of first frames.

Usage::

    python data_prep/generate_i2v_prompts.py path/to/first_frames prompts_i2v.json \
        [--captions captions.json] [--base_prompt "A photorealistic scene."]

For every image (``.png``, ``.jpg``, ``.jpeg``, ``.webp``, sorted by name) the output gets
``{"<image stem>": {"text_prompt": ..., "image_prompt": "<absolute or --relative_to path>"}}``.
The text is the image's caption if ``--captions`` (``{image file name or stem: caption}``; default
``<image_dir>/captions.json`` when that file exists) has one, else ``--base_prompt`` with the image's name; a camera-motion phrase is appended in either case
(cycling through ``data_prep.prompts.CAMERA_MOTION_PHRASES``) so that candidates move the camera.
Files that are not readable images are skipped with a warning naming them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from data_prep.prompts import with_motion, write_prompts_main  # noqa: E402
from utils.io_utils import read_json, slugify  # noqa: E402

logger = logging.getLogger("generate_i2v_prompts")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp")


def generate_i2v_prompts(
    image_dir: str | os.PathLike,
    captions: dict | None = None,
    base_prompt: str = "A photorealistic scene showing {name}.",
    relative_to: str | os.PathLike | None = None,
) -> dict:
    """Map each readable image in ``image_dir`` to an I2V prompt entry.

    ``captions`` defaults to ``image_dir/captions.json`` when that file exists.

    Raises:
        FileNotFoundError: ``image_dir`` is not a folder.
        JSONInputError: ``image_dir/captions.json`` is malformed.
    """
    from PIL import Image, UnidentifiedImageError

    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise FileNotFoundError(f"image folder not found: {image_dir}")
    if captions is None and (image_dir / "captions.json").is_file():
        captions = read_json(image_dir / "captions.json")
    captions = captions or {}
    out: dict = {}
    for path in sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTS):
        try:
            with Image.open(path) as im:
                im.verify()
        except (UnidentifiedImageError, OSError) as e:
            logger.warning("skipping %s: not a readable image (%s)", path, e)
            continue
        text = captions.get(path.name) or captions.get(path.stem)
        if not text:
            text = base_prompt.format(name=path.stem.replace("_", " "))
        image_ref = os.path.relpath(path, relative_to) if relative_to else str(path.resolve())
        key = slugify(path.stem)
        if key in out:
            key = f"{key}_{len(out)}"
        out[key] = {"text_prompt": with_motion(text, len(out)), "image_prompt": image_ref}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("image_dir")
    p.add_argument("output_json")
    p.add_argument("--captions", default=None, help="JSON {image name or stem: caption}")
    p.add_argument("--base_prompt", default="A photorealistic scene showing {name}.")
    p.add_argument("--relative_to", default=None, help="write image paths relative to this folder")
    args = p.parse_args(argv)

    def build() -> dict:
        captions = read_json(args.captions) if args.captions else None
        return generate_i2v_prompts(args.image_dir, captions, args.base_prompt, args.relative_to)

    return write_prompts_main(build, args.output_json, empty_error=f"no readable images in {args.image_dir}")


if __name__ == "__main__":
    sys.exit(main())
