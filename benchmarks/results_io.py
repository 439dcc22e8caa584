"""Where a benchmark writes its JSON: never over the committed results unless asked.

``benchmarks/results/<name>.json`` holds the committed numbers that the README and issue notes
quote. A benchmark run prints its table and writes JSON only with ``--write`` (update those
committed results) or ``--out PATH`` (anywhere else).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from utils.io_utils import atomic_write_json  # the benchmarks put the repository root on sys.path

RESULTS = Path(__file__).resolve().parent / "results"


def add_output_args(parser: argparse.ArgumentParser, name: str) -> None:
    """Add ``--write`` and ``--out`` to a benchmark's parser."""
    parser.add_argument("--write", action="store_true",
                        help=f"overwrite the committed results benchmarks/results/{name}.json")
    parser.add_argument("--out", default=None, help="write the JSON to this path instead")


def save_results(args: argparse.Namespace, name: str, obj) -> Path | None:
    """Write ``obj`` as JSON to ``--out``, or to the committed file with ``--write``; else say so."""
    if args.out is None and not args.write:
        print(f"(results not written: --write updates benchmarks/results/{name}.json, --out PATH writes elsewhere)")
        return None
    out = Path(args.out) if args.out is not None else RESULTS / f"{name}.json"
    atomic_write_json(out, obj, nan_as_null=True)  # strict JSON: NaN -> null
    print(f"wrote {out}")
    return out
