"""Inference-time search (generate/search.py, partial_denoise.py, verifiers.py) on the tiny CogVideoX (CPU)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from generate import i2v_inference, t2v_inference
from generate.pipeline import generate_video, load_pipeline
from generate.partial_denoise import PartialDenoiser, SearchError, _x0_of_step
from generate.search import SearchConfig, beam_search, best_of_n
from generate.verifiers import (
    Verifier,
    VerifierConfigError,
    VerifierSettings,
    available_metrics,
    frame_diff,
    parse_verifier_spec,
    prepare_frames,
    register_metric,
)

PROMPT = "a camera orbits a stone gateway"
SIZE = dict(num_frames=9, height=32, width=48)
STEPS = 4
VIEW = VerifierSettings(num_frames=9, image_size=16)


@pytest.fixture(scope="module")
def pipe(tiny_models):
    return load_pipeline(tiny_models["cogvideox-t2v"], "t2v", progress_bar=False)


def _denoiser(pipe, steps=STEPS):
    return PartialDenoiser(pipe, PROMPT, **SIZE, num_inference_steps=steps, guidance_scale=6.0)


def _plain(pipe, seed, steps=STEPS):
    return generate_video(pipe, PROMPT, seed=seed, **SIZE, num_inference_steps=steps, guidance_scale=6.0)


def _mean_level(view):
    return float(view.astype(np.float64).mean())


class _Counting:
    """A test metric: the view's mean pixel value; counts calls and fails on chosen call numbers."""

    def __init__(self, fail_on=()):
        self.calls = 0
        self.fail_on = set(fail_on)

    def __call__(self, view):
        self.calls += 1
        if self.calls in self.fail_on:
            raise RuntimeError(f"broken on call {self.calls}")
        return _mean_level(view)


def _verifier(metric=None):
    return Verifier({"level": 1.0}, VIEW, metrics={"level": metric or _mean_level})


@pytest.fixture(scope="module")
def best_of_3(pipe):
    return best_of_n(_denoiser(pipe), _verifier(), seed=10, n=3, progress=False)


def test_best_of_n_picks_lowest_and_equals_plain_generation(pipe, best_of_3):
    res = best_of_3
    plain = {s: _plain(pipe, s) for s in (10, 11, 12)}
    expected = {s: _mean_level(prepare_frames(v, VIEW.num_frames, VIEW.image_size)) for s, v in plain.items()}
    scores = {c["seed"]: c["final"]["score"] for c in res.candidates}
    assert scores == pytest.approx(expected, rel=1e-12)
    best = min(expected, key=expected.get)
    assert res.to_json()["chosen_seed"] == best and res.score == min(scores.values())
    np.testing.assert_array_equal(res.frames, plain[best])  # the same video as that seed alone
    assert [c["status"] == "chosen" for c in res.candidates].count(True) == 1


def test_beam_keep_all_without_branching_equals_best_of(pipe, best_of_3):
    bo = best_of_3
    bs = beam_search(_denoiser(pipe), _verifier(), seed=10, n=3, keep=3, branch=1, prune_at=0.5, progress=False)
    assert bs.chosen == bo.chosen
    assert [c["final"]["score"] for c in bs.candidates] == [c["final"]["score"] for c in bo.candidates]
    np.testing.assert_array_equal(bs.frames, bo.frames)
    assert all(c["early"]["score"] is not None for c in bs.candidates)
    assert bs.settings["prune_step"] == 2


def test_resume_is_exact_for_the_stochastic_dpm_scheduler(pipe):
    from diffusers import CogVideoXDPMScheduler

    ddim = pipe.scheduler
    pipe.scheduler = CogVideoXDPMScheduler.from_config(ddim.config)
    try:
        d = _denoiser(pipe)
        state = d.run(5, 0, 1)
        state = d.run(5, 1, 3, state)
        np.testing.assert_array_equal(d.decode(d.run(5, 3, STEPS, state).latents), _plain(pipe, 5))
    finally:
        pipe.scheduler = ddim


def test_nfe_and_verifier_calls_are_exact(pipe):
    forwards = []
    hook = pipe.transformer.register_forward_pre_hook(
        lambda mod, args, kwargs: forwards.append(kwargs["hidden_states"].shape[0]), with_kwargs=True)
    try:
        metric = _Counting()
        d = _denoiser(pipe)
        cfg = SearchConfig("beam", n=3, keep=1, branch=2, prune_at=0.5)
        res = beam_search(d, _verifier(metric), seed=30, n=3, keep=1, branch=2, prune_at=0.5, progress=False)
        # 3 noises x 2 steps + 1 survivor x 2 videos x 2 remaining steps; one CFG batch-2 call per latent per step
        assert len(forwards) == 3 * 2 + 2 * 2 == res.cost["nfe"] == d.nfe == cfg.expected_nfe(STEPS)
        assert set(forwards) == {2}
        assert metric.calls == 3 + 2 == res.cost["verifier_calls"] == cfg.expected_verifier_calls()
        assert res.cost["vae_decodes"] == 5
        branch = [c for c in res.candidates if c["parent"] is not None]
        assert len(branch) == 1 and branch[0]["renoise_seed"] is not None
        assert branch[0]["final"]["score"] != res.candidates[branch[0]["parent"]]["final"]["score"]
        assert sorted(c["status"] for c in res.candidates) == ["chosen", "finished", "pruned", "pruned"]

        forwards.clear()
        res = best_of_n(_denoiser(pipe), _verifier(), seed=30, n=2, progress=False)
        assert len(forwards) == 2 * STEPS == res.cost["nfe"] and res.cost["verifier_calls"] == 2
    finally:
        hook.remove()


def test_failing_verifier_marks_candidate_and_search_goes_on(pipe):
    res = best_of_n(_denoiser(pipe), _verifier(_Counting(fail_on={1})), seed=40, n=2, progress=False)
    first = res.candidates[0]
    assert first["status"] == "failed" and "broken on call 1" in first["final"]["error"]
    assert first["final"]["score"] is None and res.chosen == 1

    # beam: a failed early prediction is never a survivor
    res = beam_search(_denoiser(pipe), _verifier(_Counting(fail_on={2})), seed=40, n=3, keep=2, prune_at=0.5,
                      progress=False)
    assert res.candidates[1]["status"] == "failed" and res.candidates[1]["final"] is None
    assert {c["id"] for c in res.candidates if c["final"]} == {0, 2}

    with pytest.raises(SearchError, match="every early prediction"):
        beam_search(_denoiser(pipe), _verifier(_Counting(fail_on={1, 2})), seed=40, n=2, keep=1, prune_at=0.25,
                    progress=False)


def test_verifier_registry_and_weighted_sum():
    two = np.stack([np.zeros((4, 6, 3), np.uint8), np.full((4, 6, 3), 255, np.uint8)])
    assert frame_diff(two) == 1.0 and frame_diff(two[:1]) == 0.0
    assert {"consistency", "epipolar", "frame_diff"} <= set(available_metrics())
    assert parse_verifier_spec("consistency") == {"consistency": 1.0}
    assert parse_verifier_spec(" frame_diff=0.5 , consistency=2") == {"frame_diff": 0.5, "consistency": 2.0}
    for bad, msg in [("nope", "unknown verifier metric"), ("frame_diff=x", "not a number"),
                     ("frame_diff,frame_diff", "twice"), ("", "empty")]:
        with pytest.raises(VerifierConfigError, match=msg):
            parse_verifier_spec(bad)

    register_metric("test_const", fn=lambda view: 3.0)
    try:
        v = Verifier("frame_diff=2,test_const=0.5", VerifierSettings(num_frames=2, image_size=4))
        r = v.score(two)
        assert r.error is None and r.score == pytest.approx(2 * 1.0 + 0.5 * 3.0)
        assert r.components == {"frame_diff": 1.0, "test_const": 3.0}
        with pytest.raises(ValueError, match="already registered"):
            register_metric("test_const", fn=lambda view: 0.0)
    finally:
        from generate import verifiers

        verifiers._FACTORIES.pop("test_const")
    r = Verifier({"nan": 1.0}, VIEW, metrics={"nan": lambda view: float("nan")}).score(two)
    assert r.score is None and "non-finite" in r.error
    assert prepare_frames(np.zeros((9, 64, 96, 3), np.uint8), 4, 28).shape == (4, 28, 28, 3)


def test_consistency_verifier_builds_the_scorer(tiny_vggt):
    v = Verifier("consistency", VerifierSettings(num_frames=3, image_size=28, vggt_model=str(tiny_vggt), lpips=False,
                                                 points_source="depth"))
    frames = np.random.default_rng(0).integers(0, 256, (9, 64, 96, 3), dtype=np.uint8)
    r = v.score(frames)
    assert r.error is None and np.isfinite(r.score) and r.score > 0
    assert v.describe()["verifier_points_source"] == "depth"
    with pytest.raises(VerifierConfigError, match="cannot build verifier metric 'consistency'"):
        Verifier("consistency", VerifierSettings(vggt_model=str(tiny_vggt / "missing"), lpips=False))


def test_consistency_verifier_on_the_tiny_vggt_is_not_brightness(tiny_vggt):
    """The tiny random VGGT's point head covers ~0.1 % of the pixels: with the released "point_head" the
    score is ~ mean(frame^2) of a black reprojection, blind to frame order. "depth" scores the geometry."""
    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, (4, 28, 28, 3), dtype=np.uint8)
    shuffled = video[[2, 0, 3, 1]]  # same pixels, so the same mean(frame^2)
    mean_sq = float(((video.astype(np.float64) / 255) ** 2).mean())
    scores = {}
    for source in ("point_head", "depth"):
        v = Verifier("consistency", VerifierSettings(num_frames=4, image_size=28, vggt_model=str(tiny_vggt),
                                                     lpips=False, points_source=source))
        scores[source] = (v.score(video).score, v.score(shuffled).score)
    assert scores["point_head"] == pytest.approx((mean_sq, mean_sq), rel=0.02)  # why the tiny models use "depth"
    a, b = scores["depth"]
    assert abs(a - b) > 0.05 * max(a, b) and max(a, b) < 0.5 * mean_sq


def test_epipolar_verifier(fixtures_dir):
    from PIL import Image

    img = np.asarray(Image.open(fixtures_dir / "images" / "chelsea.png").convert("RGB"))
    pan = np.stack([img[20:276, 10 + 6 * i:266 + 6 * i] for i in range(3)])  # a camera panning over a photo
    v = Verifier("epipolar", VerifierSettings(num_frames=3, image_size=256))
    r = v.score(pan)
    assert r.error is None and 0.0 <= r.score < 2.0  # px; a pure translation fits a fundamental matrix well
    noise = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)  # nothing to match
    r = v.score(noise)
    assert r.score is None and "all 2 consecutive frame pairs were skipped" in r.error


def test_flow_matching_x0_uses_the_sigma_of_the_step():
    from diffusers import FlowMatchEulerDiscreteScheduler

    sched = FlowMatchEulerDiscreteScheduler()
    sched.set_timesteps(4)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 3, generator=g), torch.randn(2, 3, generator=g)
    for i, t in enumerate(sched.timesteps[:2]):
        s = sched.sigmas[i]
        x_t, v = (1 - s) * x0 + s * noise, noise - x0
        out = sched.step(v, t, x_t, return_dict=False)
        torch.testing.assert_close(_x0_of_step(sched, out, {"sample": x_t, "model_output": v}), x0)


def test_cli_best_of_and_beam(tiny_models, tiny_vggt, fixtures_dir, tmp_path):
    base = ["--base_model", str(tiny_models["cogvideox-t2v"]), "--num_inference_steps", "2", "--output_dir", str(tmp_path),
            "--height", "32", "--width", "48"]
    assert t2v_inference.main([PROMPT, *base, "--best_of", "2", "--verifier_vggt_model", str(tiny_vggt),
                               "--verifier_no_lpips", "--verifier_size", "28", "--verifier_frames", "3",
                               "--verifier_points_source", "depth"]) == 0
    info = json.loads((tmp_path / "a_camera_orbits_a_stone_gateway_seed42_best2_consistency.search.json").read_text())
    assert (tmp_path / info["video"]).is_file() and info["chosen_seed"] in (42, 43)
    assert info["settings"]["verifier"] == "consistency=1" and info["cost"]["nfe"] == 4
    assert info["settings"]["verifier_points_source"] == "depth" and info["generation"]["num_inference_steps"] == 2

    rc = i2v_inference.main(["the camera pushes in", str(fixtures_dir / "images" / "chelsea.png"), "--base_model",
                             str(tiny_models["cogvideox-i2v"]), "--num_inference_steps", "2", "--output_dir",
                             str(tmp_path), "--best_of", "2", "--search", "beam", "--verifier", "frame_diff",
                             "--prune_at", "0.5"])
    assert rc == 0
    info = json.loads((tmp_path / "chelsea_seed42_beam2_keep1_branch1_at1_frame_diff.search.json").read_text())
    assert info["cost"] == {**info["cost"], "nfe": 2 * 1 + 1 * 1, "verifier_calls": 3}

    assert t2v_inference.main([PROMPT, *base, "--best_of", "2", "--search", "beam", "--keep", "3"]) == 2
    assert t2v_inference.main([PROMPT, *base, "--best_of", "2", "--verifier", "nope"]) == 2


def test_cli_search_resumes_with_skip_existing(tiny_models, tmp_path, caplog):
    caplog.set_level("INFO")
    run = [PROMPT, "--base_model", str(tiny_models["cogvideox-t2v"]), "--num_inference_steps", "2", "--output_dir",
           str(tmp_path), "--height", "32", "--width", "48", "--best_of", "2", "--verifier", "frame_diff",
           "--verifier_size", "16", "--skip_existing"]
    stem = tmp_path / "a_camera_orbits_a_stone_gateway_seed42_best2_frame_diff"
    video, record = stem.with_suffix(".mp4"), stem.with_suffix(".search.json")
    assert t2v_inference.main(run) == 0
    first = video.stat().st_mtime_ns
    assert t2v_inference.main(run) == 0  # finished and matching: kept
    assert video.stat().st_mtime_ns == first and "kept" in caplog.text
    caplog.clear()
    assert t2v_inference.main([*run, "--verifier_size", "24"]) == 0  # another verifier view: searched again
    assert "settings differ: settings.verifier_size" in caplog.text
    assert json.loads(record.read_text())["settings"]["verifier_size"] == 24
    caplog.clear()
    assert t2v_inference.main([*run, "--verifier_size", "24", "--guidance_scale", "3"]) == 0
    assert "settings differ: generation.guidance_scale" in caplog.text
    # another verifier spec writes its own files instead of replacing these
    assert t2v_inference.main([*run, "--verifier", "frame_diff=0.5"]) == 0
    assert (tmp_path / f"{stem.name}0.5.search.json").is_file() and record.is_file()
    # a recorded failure is not a finished result
    info = json.loads(record.read_text())
    record.write_text(json.dumps({**info, "error": "the verifier failed on every finished candidate"}))
    caplog.clear()
    assert t2v_inference.main([*run, "--verifier_size", "24", "--guidance_scale", "3"]) == 0
    assert "the recorded run failed" in caplog.text and "error" not in json.loads(record.read_text())
