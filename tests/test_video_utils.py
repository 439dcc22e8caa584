"""utils/video_utils.py + video_writer.py: frame sampling, cropping/resizing, atomic writing, clear read errors."""

from pathlib import Path

import numpy as np
import pytest

from utils.frames import center_crop_resize, sample_frame_indices
from utils.video_utils import (
    VideoReadError,
    count_frames,
    get_video_info,
    load_frames,
    read_video_frames,
    sample_uniform_frames,
)
from utils.video_writer import write_video

VIDEOS = Path(__file__).parent / "fixtures" / "videos"
CARPHONE = VIDEOS / "carphone_pristine.mp4"  # 176x144, 120 frames
BIKES = VIDEOS / "bikes.mp4"  # 640x272, 250 frames


def _gradient_frames(t=6, h=32, w=48):
    y, x = np.mgrid[0:h, 0:w]
    frames = []
    for i in range(t):
        r = (x * 255 / (w - 1)).astype(np.uint8)
        g = (y * 255 / (h - 1)).astype(np.uint8)
        b = np.full((h, w), 40 * i % 256, np.uint8)
        frames.append(np.stack([r, g, b], -1))
    return np.stack(frames)


# ---- indices -------------------------------------------------------------------------------------


def test_sample_frame_indices_uniform_first_last():
    idx = sample_frame_indices(120, 10)
    assert idx.dtype == np.int64 and idx.shape == (10,)
    assert idx[0] == 0 and idx[-1] == 119
    assert np.all(np.diff(idx) > 0)
    assert np.all(np.abs(np.diff(idx) - 119 / 9) <= 1)
    assert sample_frame_indices(49, 49).tolist() == list(range(49))
    assert sample_frame_indices(5, 1).tolist() == [0]
    assert sample_frame_indices(5, 3).tolist() == [0, 2, 4]
    with pytest.raises(ValueError):
        sample_frame_indices(3, 4)
    with pytest.raises(ValueError):
        sample_frame_indices(3, 0)


def test_center_crop_resize_aspect():
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, 50:150] = 255  # the centre square is white, the sides black
    sq = center_crop_resize(img, 50, 50)  # wider than 1:1 -> columns cropped
    assert sq.shape == (50, 50, 3) and sq.min() == 255
    img2 = np.zeros((100, 200, 3), np.uint8)
    img2[25:75] = 255  # the central band of rows is white
    wide = center_crop_resize(img2, 10, 40)  # 4:1 target of a 2:1 image -> rows 25..74 kept
    assert wide.shape == (10, 40, 3) and wide.min() == 255
    assert center_crop_resize(img, None, None) is img
    assert center_crop_resize(img, 50, None).shape == (50, 100, 3)


# ---- reading -------------------------------------------------------------------------------------


def test_info_and_count_real_videos():
    info = get_video_info(CARPHONE)
    assert (info.num_frames, info.width, info.height) == (120, 176, 144)
    assert abs(info.fps - 29.97) < 0.01
    assert count_frames(BIKES) == 250


def test_sample_uniform_frames_matches_full_decode():
    frames, idx = load_frames(CARPHONE, 10, 56, 56, return_indices=True)
    assert frames.shape == (10, 56, 56, 3) and frames.dtype == np.uint8
    assert idx.tolist() == sample_frame_indices(120, 10).tolist()
    allf = read_video_frames(CARPHONE)
    assert allf.shape == (120, 144, 176, 3)
    expected = np.stack([center_crop_resize(allf[i], 56, 56) for i in idx])
    np.testing.assert_array_equal(frames, expected)
    np.testing.assert_array_equal(sample_uniform_frames(CARPHONE, 10, 56), frames)


def test_reads_the_stream_it_counts(tmp_path):
    """Frames come from the first video stream, the one whose frames are counted; ffmpeg's default
    pick (the largest stream) gave frames of another stream sampled with this stream's count."""
    import subprocess

    import imageio_ffmpeg

    small = np.zeros((5, 32, 32, 3), np.uint8)
    small[..., 0] = 200  # red
    large = np.zeros((12, 64, 64, 3), np.uint8)
    large[..., 2] = 200  # blue
    write_video(tmp_path / "a.mp4", small, fps=8)
    write_video(tmp_path / "b.mp4", large, fps=8)
    both = tmp_path / "two_streams.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(tmp_path / "a.mp4"),
                    "-i", str(tmp_path / "b.mp4"), "-map", "0:v", "-map", "1:v", "-c", "copy", str(both)],
                   check=True, capture_output=True)  # fmt: skip
    assert count_frames(both) == 5
    info = get_video_info(both)
    assert (info.width, info.height) == (32, 32)
    frames = load_frames(both, 5)
    assert frames.shape == (5, 32, 32, 3)
    assert frames[..., 0].mean() > 150 and frames[..., 2].mean() < 50
    assert read_video_frames(both).shape == (5, 32, 32, 3)


def test_load_frames_target_aspect():
    f = load_frames(BIKES, 3, 48, 72)
    assert f.shape == (3, 48, 72, 3)
    native = sample_uniform_frames(CARPHONE, 2, None)
    assert native.shape == (2, 144, 144, 3)


# ---- writing -------------------------------------------------------------------------------------


def test_write_video_roundtrip_atomic(tmp_path):
    frames = _gradient_frames()
    out = tmp_path / "sub" / "v.mp4"
    assert write_video(out, frames, fps=8) == out
    back = read_video_frames(out)
    assert back.shape == frames.shape
    assert np.abs(back.astype(int) - frames.astype(int)).mean() < 3.0
    assert get_video_info(out).fps == pytest.approx(8.0)
    # overwrite replaces; no temp files are left behind
    write_video(out, frames[:3], fps=8)
    assert count_frames(out) == 3
    assert sorted(p.name for p in out.parent.iterdir()) == ["v.mp4"]
    # odd sizes are kept exactly (yuv444p), float input accepted
    odd = tmp_path / "odd.mp4"
    write_video(odd, frames[:, :31, :47].astype(np.float32) / 255.0, fps=4)
    assert read_video_frames(odd).shape == (6, 31, 47, 3)


def test_write_video_bad_input_leaves_old_file(tmp_path):
    out = tmp_path / "v.mp4"
    write_video(out, _gradient_frames(4), fps=8)
    before = out.read_bytes()
    with pytest.raises(ValueError):
        write_video(out, np.zeros((0, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError):
        write_video(out, np.zeros((2, 8, 8), np.uint8)[..., None].repeat(2, -1))
    assert out.read_bytes() == before


# ---- errors --------------------------------------------------------------------------------------


def _faststart_truncated(tmp_path) -> Path:
    import imageio_ffmpeg

    full = tmp_path / "fs.mp4"
    frames = (np.random.default_rng(0).integers(0, 255, (40, 64, 64, 3))).astype(np.uint8)
    w = imageio_ffmpeg.write_frames(
        str(full),
        (64, 64),
        fps=8,
        macro_block_size=1,
        ffmpeg_log_level="error",
        output_params=["-movflags", "+faststart"],
    )
    w.send(None)
    for f in frames:
        w.send(f)
    w.close()
    data = full.read_bytes()
    trunc = tmp_path / "fs_trunc.mp4"
    trunc.write_bytes(data[: len(data) // 2])
    return trunc


def test_read_errors_name_the_file(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "text.mp4"
    text.write_text("this is not a video\n")
    trunc = tmp_path / "trunc.mp4"
    trunc.write_bytes(CARPHONE.read_bytes()[:200_000])
    one = tmp_path / "one.mp4"
    write_video(one, _gradient_frames(1))
    cases = {
        tmp_path / "missing.mp4": "not found",
        empty: "empty",
        text: "ffmpeg",
        trunc: "ffmpeg",
        _faststart_truncated(tmp_path): "decode errors",
        one: "only 1 decodable frame",
    }
    for path, reason in cases.items():
        with pytest.raises(VideoReadError) as ei:
            sample_uniform_frames(path, n_frames=4, size=28)
        assert isinstance(ei.value, ValueError)
        assert str(path) in str(ei.value) and reason in str(ei.value), str(ei.value)
    # the decodable part of a truncated stream can still be used on request
    part = load_frames(tmp_path / "fs_trunc.mp4", 4, 28, 28, allow_decode_errors=True)
    assert part.shape == (4, 28, 28, 3)
    # a directory is not a video
    with pytest.raises(VideoReadError):
        count_frames(tmp_path)
