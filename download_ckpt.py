"""Download the released VideoGPA LoRA adapters (GitHub release ``v1.0.0-weights``).

    python download_ckpt.py all            # or: t2v | i2v | t2v15 | i2v-1k | ti2v
    python download_ckpt.py t2v --base_url https://mirror.example/videogpa --out_dir /data/checkpoints

Each adapter lands at ``<out_dir>/VideoGPA-<T2V|I2V|T2V1.5|I2V-1K|Wan2.2TI2V>-lora/adapter_model.safetensors``
(release files ``t2v_``, ``i2v_``, ``t2v15_``, ``i2v_1k_``, ``wan_ti2v_adapter_model.safetensors``), next to
the ``adapter_config.json`` this repository ships in ``checkpoints/`` (copied there when ``--out_dir``
is another folder), so the folder can be passed as ``--lora_path`` to the inference scripts.

* A file whose size equals the server's ``Content-Length`` (HEAD request) is skipped.
* Downloads go to ``<file>.part`` and are renamed when complete and verified (safetensors header).
* An interrupted download resumes from the ``.part`` file with an HTTP ``Range`` request (servers
  that answer ``200`` instead of ``206`` are handled by starting over); up to ``--retries``
  automatic retries, and a re-run resumes too.
* Failures (HTTP errors, connection refused, incomplete or corrupt file) exit non-zero with a
  message naming the URL or file.

Standard library only (urllib) plus tqdm for the progress bar.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import struct
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent
GITHUB_ORG = "Hongyang-Du"  # owner of the VideoGPA repository on GitHub
RELEASE_TAG = "v1.0.0-weights"
DEFAULT_BASE_URL = f"https://github.com/{GITHUB_ORG}/VideoGPA/releases/download/{RELEASE_TAG}"
DEFAULT_OUT_DIR = REPO_ROOT / "checkpoints"
WEIGHTS_NAME = "adapter_model.safetensors"

# name on the command line -> (file in the release, adapter folder under out_dir)
ADAPTERS = {
    "t2v": ("t2v_adapter_model.safetensors", "VideoGPA-T2V-lora"),  # CogVideoX-5B
    "i2v": ("i2v_adapter_model.safetensors", "VideoGPA-I2V-lora"),  # CogVideoX-5B-I2V
    "t2v15": ("t2v15_adapter_model.safetensors", "VideoGPA-T2V1.5-lora"),  # CogVideoX1.5-5B
    "i2v-1k": ("i2v_1k_adapter_model.safetensors", "VideoGPA-I2V-1K-lora"),  # CogVideoX-5B-I2V, 1,000 steps
    "ti2v": ("wan_ti2v_adapter_model.safetensors", "VideoGPA-Wan2.2TI2V-lora"),  # Wan2.2-TI2V-5B
}

_CHUNK = 1 << 20
_USER_AGENT = "VideoGPA-download_ckpt/1.0"


class DownloadError(RuntimeError):
    """A download failed; the message names the URL or file and says whether a re-run resumes."""


def _request(url: str, method: str = "GET", offset: int = 0) -> urllib.request.Request:
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.Request(url, method=method, headers=headers)


def _describe(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return f"cannot connect: {e.reason}"
    return f"{type(e).__name__}: {e}"


def remote_size(url: str, timeout: float = 60.0) -> int | None:
    """Size in bytes announced by the server for ``url`` (HEAD ``Content-Length``), None if not announced.

    Raises:
        DownloadError: HTTP error status (e.g. 404) or connection failure; a server that does not
            allow HEAD (405/501) gives None instead.
    """
    try:
        with urllib.request.urlopen(_request(url, "HEAD"), timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
    except urllib.error.HTTPError as e:
        if e.code in (405, 501):
            return None
        raise DownloadError(f"{url}: {_describe(e)}") from e
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise DownloadError(f"{url}: {_describe(e)}") from e
    try:
        return int(length) if length is not None else None
    except ValueError:
        return None


def check_safetensors(path: str | os.PathLike) -> None:
    """Check that ``path`` has a well-formed safetensors header (8-byte length + JSON) covering the file.

    Raises:
        DownloadError: not a safetensors file (e.g. an HTML error page) or truncated; names the file.
    """
    path = Path(path)
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ValueError("shorter than 8 bytes")
            (n,) = struct.unpack("<Q", head)
            if n == 0 or 8 + n > size:
                raise ValueError(f"header length {n} does not fit a file of {size} bytes")
            header = json.loads(f.read(n).decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        if 8 + n + end != size:
            raise ValueError(f"tensor data ends at byte {8 + n + end}, file has {size} bytes")
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, IndexError) as e:
        raise DownloadError(f"{path} is not a valid safetensors file: {e}") from e


def _fetch_once(url: str, part: Path, size: int | None, timeout: float, progress: bool) -> None:
    """One GET of ``url`` into ``part`` (resuming with Range); raises on any shortfall."""
    from tqdm.auto import tqdm

    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:
        part.unlink()
        offset = 0
    if size is not None and offset == size:
        return
    try:
        resp = urllib.request.urlopen(_request(url, "GET", offset), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # range not satisfiable: our .part is stale
            part.unlink()
            raise DownloadError(f"{url}: server rejected resuming at byte {offset}; starting over") from e
        raise DownloadError(f"{url}: {_describe(e)}") from e
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise DownloadError(f"{url}: {_describe(e)}") from e
    with resp:
        status = getattr(resp, "status", 200)
        if offset and status == 206:
            content_range = resp.headers.get("Content-Range", "")
            start = content_range.split()[-1].split("-")[0] if content_range else ""
            if start and start != str(offset):
                raise DownloadError(f"{url}: server resumed at {content_range!r}, asked for byte {offset}")
            mode = "ab"
        else:  # 200: the server sends the whole file
            offset, mode = 0, "wb"
        length = resp.headers.get("Content-Length")
        expected = offset + int(length) if length is not None and length.isdigit() else size
        got = offset
        with open(part, mode) as f, tqdm(
            total=expected, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
            desc=part.name[: -len(".part")], disable=not progress, leave=False,
        ) as bar:
            try:
                while True:
                    chunk = resp.read(_CHUNK)
                    if not chunk:
                        break
                    f.write(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException, socket.timeout) as e:
                raise DownloadError(f"{url}: connection lost after {got} bytes ({_describe(e)})") from e
            finally:
                f.flush()
                os.fsync(f.fileno())
    if expected is not None and got != expected:
        raise DownloadError(f"{url}: connection closed after {got} of {expected} bytes")


def download_file(
    url: str,
    dest: str | os.PathLike,
    *,
    timeout: float = 60.0,
    retries: int = 3,
    progress: bool = True,
    verify_safetensors: bool = True,
) -> str:
    """Download ``url`` to ``dest`` via ``dest.part`` (resumable), unless ``dest`` is already complete.

    Args:
        url: http(s) URL.
        dest: target file; parent folders are created.
        timeout: socket timeout in seconds.
        retries: automatic resumes after a dropped connection (0 = one attempt).
        progress: show a tqdm progress bar.
        verify_safetensors: check the finished file with :func:`check_safetensors`.
    Returns:
        ``"skipped"`` (complete file present), ``"downloaded"`` or ``"resumed"`` (a ``.part`` was continued).
    Raises:
        DownloadError: HTTP error, connection failure, incomplete after all retries (the ``.part``
            is kept so a re-run resumes), or a corrupt file (deleted).
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    size = remote_size(url, timeout)
    if dest.is_file():
        if size is None or dest.stat().st_size == size:
            return "skipped"
        print(f"{dest}: size {dest.stat().st_size} differs from the server's {size}; downloading again",
              file=sys.stderr)
    dest.parent.mkdir(parents=True, exist_ok=True)
    resumed = part.exists() and part.stat().st_size > 0
    last: DownloadError | None = None
    for attempt in range(int(retries) + 1):
        if attempt:
            time.sleep(min(2.0 ** (attempt - 1), 10.0) * 0.1)
        try:
            _fetch_once(url, part, size, timeout, progress)
            break
        except DownloadError as e:
            last = e
            if attempt < retries:
                print(f"{e}; retrying ({attempt + 1}/{retries})", file=sys.stderr)
    else:
        have = part.stat().st_size if part.exists() else 0
        raise DownloadError(f"{last} ({have} bytes kept in {part}; re-run to resume)") from last
    if verify_safetensors:
        try:
            check_safetensors(part)
        except DownloadError:
            part.unlink()
            raise
    os.replace(part, dest)
    return "resumed" if resumed else "downloaded"


def _ensure_config(folder: Path) -> None:
    """Put the repository's adapter_config.json next to a download in another ``--out_dir``."""
    cfg = folder / "adapter_config.json"
    shipped = REPO_ROOT / "checkpoints" / folder.name / "adapter_config.json"
    if not cfg.exists() and shipped.is_file():
        shutil.copyfile(shipped, cfg)


def main(argv=None) -> int:
    """Command line; returns 0 when every requested adapter is present, 1 otherwise."""
    p = argparse.ArgumentParser(
        description="Download the released VideoGPA LoRA adapters.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("which", choices=[*ADAPTERS, "all"], help="adapter to download")
    p.add_argument("--base_url", default=DEFAULT_BASE_URL, help="release download URL")
    p.add_argument("--out_dir", default=str(DEFAULT_OUT_DIR), help="checkpoints root")
    p.add_argument("--timeout", type=float, default=60.0, help="socket timeout (s)")
    p.add_argument("--retries", type=int, default=3, help="automatic resumes after a dropped connection")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)

    names = list(ADAPTERS) if args.which == "all" else [args.which]
    failed = []
    for name in names:
        filename, folder = ADAPTERS[name]
        url = f"{args.base_url.rstrip('/')}/{filename}"
        dest = Path(args.out_dir) / folder / WEIGHTS_NAME
        try:
            status = download_file(url, dest, timeout=args.timeout, retries=args.retries,
                                   progress=not args.no_progress)
        except DownloadError as e:
            print(f"error: {name}: {e}", file=sys.stderr)
            failed.append(name)
            continue
        _ensure_config(dest.parent)
        print(f"{name}: {status} {dest}")
    if failed:
        print(f"error: failed to download {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
