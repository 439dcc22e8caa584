"""Wan2.2-TI2V flow-matching Diffusion-DPO family (train_dpo/families/wan.py) and Wan encoder
(train_dpo/encode_wan.py) on the tiny Wan2.2 pipeline, CPU.

* parity: the family's transformer inputs equal those of diffusers' own pipelines (``WanPipeline``
  text-to-video, ``WanImageToVideoPipeline`` first-frame conditioned, both ``expand_timesteps``),
  captured with a forward pre-hook; the encoder's prompt and condition latents are the pipeline's;
* step 0: one transformer with a zero-initialised LoRA, reference = adapter disabled, loss ln 2;
* learning: a plain Adam loop on one fixed preference pair raises the held-out implicit accuracy;
* 03_encode.py writes [48, F, h, w] mean latents normalised like the pipeline, resumable.
"""

from __future__ import annotations

import json
import math
import runpy
import shutil
from pathlib import Path

import pytest
import torch

from train_dpo.families.wan import WanFamily
from train_dpo.loss import diffusion_dpo_loss

REPO = Path(__file__).resolve().parents[1]
PROMPT = "a camera orbits a stone gateway"
SIZE = 64  # -> 4 x 4 latents -> 2 x 2 tokens per latent frame
FRAMES = 17  # -> 5 latent frames


def _capture_pipeline_calls(pipe, **call):
    """Run ``pipe`` (3 steps, no CFG, latent output) and return the transformer's kwargs per step."""
    calls = []

    def pre_hook(module, args, kwargs):
        calls.append({k: (v.clone() if torch.is_tensor(v) else v) for k, v in kwargs.items()})

    h = pipe.transformer.register_forward_pre_hook(pre_hook, with_kwargs=True)
    try:
        with torch.no_grad():
            pipe(prompt=PROMPT, num_frames=FRAMES, height=SIZE, width=SIZE, num_inference_steps=3,
                 guidance_scale=1.0, output_type="latent", generator=torch.Generator().manual_seed(0), **call)
    finally:
        h.remove()
    return calls


@pytest.mark.parametrize("mode", ["t2v", "ti2v"])
def test_transformer_inputs_equal_the_pipelines(tiny_wan, fixtures_dir, mode):
    from diffusers import DiffusionPipeline, WanImageToVideoPipeline

    from generate.pipeline import load_image
    from train_dpo.encode import EncodeConfig
    from train_dpo.encode_wan import WanEncoder

    image_path = fixtures_dir / "images" / "chelsea.png"
    if mode == "t2v":
        pipe = DiffusionPipeline.from_pretrained(str(tiny_wan))
        calls = _capture_pipeline_calls(pipe)
    else:
        pipe = WanImageToVideoPipeline.from_pretrained(str(tiny_wan))
        calls = _capture_pipeline_calls(pipe, image=load_image(image_path, SIZE, SIZE))
    assert pipe.config.expand_timesteps
    _, family = WanFamily.load(tiny_wan, torch.float32)
    assert (family.flow_shift, family.num_train_timesteps, family.expand_timesteps) == (5.0, 1000, True)
    cfg = EncodeConfig(base_model=str(tiny_wan), input_json="-", output_json="-", num_frames=FRAMES,
                       height=SIZE, width=SIZE, max_sequence_length=512)
    cond = WanEncoder(pipe, cfg).encode_condition(PROMPT, image_path if mode == "ti2v" else None)
    sigmas = pipe.scheduler.sigmas  # the scheduler's own noise levels, float32
    # 3 steps: s = 1, 0.667, 0.334 -> training timesteps 667 and 334 are steps 1 and 2 (step 0 has
    # s = 1 - 1e-6 by the scheduler's guard against log(0), outside the training range 1..999)
    for i, t in ((1, 667), (2, 334)):
        kw = calls[i]
        hidden = kw["hidden_states"]
        assert torch.equal(kw["encoder_hidden_states"][0], cond["prompt_embeds"])  # encoder = pipeline
        image = None
        if mode == "ti2v":
            image = hidden[:, :, :1]
            assert torch.equal(cond["image_latents"], image[0])  # encoder's condition = pipeline's
        # x0 for which the scheduler's sigma_i noising gives the captured latents
        noise = torch.randn(hidden.shape, generator=torch.Generator().manual_seed(i))
        x0 = (hidden - sigmas[i] * noise) / (1 - sigmas[i])
        inputs, target = family.model_inputs(x0, noise, torch.tensor([t]), kw["encoder_hidden_states"], image)
        skip = ("attention_kwargs", "return_dict")
        expected = {k: v for k, v in kw.items() if v is not None and k not in skip}
        assert set(inputs) == set(expected)
        assert torch.equal(inputs["timestep"], kw["timestep"]) and inputs["timestep"].dtype == torch.float32
        assert torch.equal(inputs["encoder_hidden_states"], kw["encoder_hidden_states"])
        diff = (inputs["hidden_states"] - hidden).abs().max().item()
        ts = kw["timestep"][0, -1].item()
        print(f"\n{mode} step {i} (t={t}, timestep {ts:.0f}): hidden max abs diff {diff:.2e}")
        assert diff < 1e-5
        if mode == "ti2v":
            assert torch.equal(inputs["hidden_states"][:, :, :1], image)
            assert kw["timestep"][0, :4].eq(0).all() and kw["timestep"][0, 4:].gt(0).all()  # 2x2 tokens/frame
        assert torch.allclose(target, noise - x0)


def test_timesteps_sampling_and_released_timestep_input(tiny_wan):
    _, family = WanFamily.load(tiny_wan, torch.float32)
    t = family.sample_timesteps(20000, torch.Generator().manual_seed(0))
    assert t.dtype == torch.int64 and t.min().item() == 1 and t.max().item() == 999  # U{1..999} as released
    # released: the unshifted t reaches the model; default: floor(1000 * sigma), e.g. t=500 -> 833
    released = WanFamily(family_config(tiny_wan), 5.0, timestep_input="released")
    assert family.model_timesteps(torch.tensor([500])).item() == 833
    assert released.model_timesteps(torch.tensor([500])).item() == 500
    x0 = torch.zeros(1, 48, 2, 4, 4)
    inputs, _ = released.model_inputs(x0, torch.ones_like(x0), torch.tensor([500]), torch.zeros(1, 512, 32))
    assert inputs["timestep"].tolist() == [[500.0] * 8]  # no image: uniform, also on frame 0
    assert torch.allclose(inputs["hidden_states"], torch.full_like(x0, 5 * 0.5 / (1 + 4 * 0.5)))


def family_config(folder):
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel.load_config(str(folder), subfolder="transformer")


def test_check_item_names_what_does_not_fit(tiny_wan):
    family = WanFamily(family_config(tiny_wan), 5.0)
    ok = {"latents_w": torch.zeros(48, 5, 4, 4), "latents_l": torch.zeros(48, 5, 4, 4),
          "prompt_embeds": torch.zeros(512, 32), "image_latents": torch.zeros(48, 1, 4, 4)}
    family.check_item(ok)
    family.check_item({k: v for k, v in ok.items() if k != "image_latents"})
    assert family.requires_image() is False
    bad = [({"latents_w": torch.zeros(5, 16, 4, 4), "latents_l": torch.zeros(5, 16, 4, 4)}, "48, F, H, W"),
           ({"prompt_embeds": torch.zeros(226, 4096)}, "[L, 32]"),
           ({"image_latents": torch.zeros(48, 5, 4, 4)}, "(48, 1, 4, 4)")]
    for change, needle in bad:
        with pytest.raises(ValueError) as e:
            family.check_item({**ok, **change})
        assert needle in str(e.value) and "03_encode.py" in str(e.value)


def _lora_transformer(folder, rank=8):
    from peft import get_peft_model

    from utils.lora import make_lora_config

    transformer, family = WanFamily.load(folder, torch.float32)
    transformer.requires_grad_(False)
    return get_peft_model(transformer, make_lora_config(rank, rank, 0.0, WanFamily.lora_targets)), family


def _dpo(model, family, pair, generator):
    """One Diffusion-DPO evaluation in the order of families/base.py: noise, then timesteps."""
    x0 = family.prepare_latents(torch.cat([pair["latents_w"], pair["latents_l"]]))
    b = pair["latents_w"].shape[0]
    noise = torch.randn(x0[:b].shape, generator=generator)
    t = family.sample_timesteps(b, generator)
    image = pair.get("image_latents")
    inputs, target = family.model_inputs(
        x0, torch.cat([noise] * 2), torch.cat([t] * 2), torch.cat([pair["prompt_embeds"]] * 2),
        None if image is None else torch.cat([image] * 2),
    )  # fmt: skip
    with torch.no_grad(), model.disable_adapter():
        ref = family.prediction(model(**inputs, return_dict=False)[0])
    pred = family.prediction(model(**inputs, return_dict=False)[0])
    return diffusion_dpo_loss(pred[:b], pred[b:], ref[:b], ref[b:], target[:b], target[b:], beta=1.0)


def _pair(seed=0, image=True):
    g = torch.Generator().manual_seed(seed)
    pair = {"latents_w": torch.randn(1, 48, 5, 4, 4, generator=g) + 0.1,
            "latents_l": torch.randn(1, 48, 5, 4, 4, generator=g) - 0.1,
            "prompt_embeds": torch.randn(1, 512, 32, generator=g)}
    if image:
        pair["image_latents"] = pair["latents_w"][:, :, :1].clone()
    return pair


def test_step0_loss_is_ln2_with_one_transformer(tiny_wan):
    from diffusers import WanTransformer3DModel

    model, family = _lora_transformer(tiny_wan)
    out = _dpo(model, family, _pair(), torch.Generator().manual_seed(1))
    print(f"\nstep-0 DPO loss {out.loss.item()!r} (ln 2 = {math.log(2)!r})")
    assert torch.equal(out.logits, torch.zeros(1)) and out.loss.item() == torch.log(torch.tensor(2.0)).item()
    assert out.err_w.item() > 0 and out.err_w.item() == out.err_ref_w.item()
    assert sum(isinstance(m, WanTransformer3DModel) for m in model.modules()) == 1
    out.loss.backward()
    with_grad = [n for n, p in model.named_parameters() if p.grad is not None]
    assert with_grad and all(".lora_" in n for n in with_grad)
    targets = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in with_grad}
    assert targets == {"to_q", "to_k", "to_v", "0"}  # to_out.0 of self- and cross-attention


def test_learning_on_a_fixed_pair(tiny_wan):
    """Plain Adam on one pair (TI2V): held-out implicit accuracy 0 at step 0 (logits exactly 0) -> >= 0.8."""
    torch.manual_seed(0)
    model, family = _lora_transformer(tiny_wan)
    pair = _pair(seed=3)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)

    def held_out():
        with torch.no_grad():
            outs = [_dpo(model, family, pair, torch.Generator().manual_seed(10_000 + k)) for k in range(16)]
        return (sum(float(o.accuracy) for o in outs) / 16, sum(float(o.loss) for o in outs) / 16,
                sum(float(o.reward_margin) for o in outs) / 16)

    curve = [(0, *held_out())]
    g = torch.Generator().manual_seed(0)
    for step in range(1, 31):
        opt.zero_grad()
        _dpo(model, family, pair, g).loss.backward()
        opt.step()
        if step % 10 == 0:
            curve.append((step, *held_out()))
    print("\n(step, held-out accuracy, loss, reward margin):", [tuple(round(v, 4) for v in c) for c in curve])
    assert curve[0][1] == 0.0 and curve[0][2] == pytest.approx(math.log(2), abs=1e-6)
    assert curve[-1][1] >= 0.8 and curve[-1][2] < math.log(2) and curve[-1][3] > 0


def test_encode_script_writes_normalised_mean_latents(tiny_wan, fixtures_dir, tmp_path):
    from diffusers import AutoencoderKLWan

    from utils.video_utils import load_frames

    root = tmp_path / "cands"
    (root / "g1").mkdir(parents=True)
    shutil.copy(fixtures_dir / "videos" / "carphone_pristine.mp4", root / "g1" / "seed_0.mp4")
    shutil.copy(fixtures_dir / "images" / "chelsea.png", root / "first.png")
    groups = [{"group_id": "g1", "prompt": PROMPT, "image_path": "first.png",
               "videos": [{"video_path": "g1/seed_0.mp4", "seed": 0}]},
              {"group_id": "g2", "prompt": PROMPT, "videos": []}]  # text-to-video group: no image
    (root / "scored.json").write_text(json.dumps({"groups": groups}))
    main = runpy.run_path(str(REPO / "train_dpo" / "Wan2.2-TI2V-5B_lora" / "03_encode.py"))["main"]
    argv = ["--base_model", str(tiny_wan), "--input_json", str(root / "scored.json"),
            "--output_json", str(root / "enc.json"), "--num_frames", str(FRAMES),
            "--height", str(SIZE), "--width", str(SIZE), "--device", "cpu"]
    assert main(argv) == 0
    out = json.loads((root / "enc.json").read_text())["groups"]
    from safetensors.torch import load_file

    lat = load_file(str(root / out[0]["videos"][0]["latent_path"]))["latents"]
    c1 = load_file(str(root / out[0]["condition_path"]))
    c2 = load_file(str(root / out[1]["condition_path"]))
    assert lat.shape == (48, 5, 4, 4) and lat.dtype == torch.float32
    assert c1["image_latents"].shape == (48, 1, 4, 4) and c1["prompt_embeds"].shape == (512, 32)
    assert set(c2) == {"prompt_embeds"}
    # independent: posterior mean, (z - mean) / std per channel
    vae = AutoencoderKLWan.from_pretrained(str(tiny_wan), subfolder="vae")
    frames = torch.from_numpy(load_frames(root / "g1" / "seed_0.mp4", FRAMES, SIZE, SIZE)).float()
    video = (frames / 127.5 - 1).permute(3, 0, 1, 2)[None]
    with torch.no_grad():
        z = vae.encode(video).latent_dist.mean[0]
    mean = torch.tensor(vae.config.latents_mean)[:, None, None, None]
    std = torch.tensor(vae.config.latents_std)[:, None, None, None]
    assert torch.allclose(lat, (z - mean) / std, atol=1e-5)
    mtime = (root / out[0]["videos"][0]["latent_path"]).stat().st_mtime_ns
    assert main(argv) == 0  # resume: nothing re-encoded
    assert (root / out[0]["videos"][0]["latent_path"]).stat().st_mtime_ns == mtime


def test_train_script_on_tiny_wan(tiny_wan, tmp_path):
    """04_train.py end to end (TI2V pairs); runs once WanFamily is registered in train_dpo.families."""
    families = pytest.importorskip("train_dpo.families")
    if "WanTransformer3DModel" not in getattr(families, "FAMILY_BY_TRANSFORMER", {}):
        pytest.skip("WanFamily is not registered in train_dpo.families yet (integration)")
    _write_wan_pairs(tmp_path)
    main = runpy.run_path(str(REPO / "train_dpo" / "Wan2.2-TI2V-5B_lora" / "04_train.py"))["main"]
    out = tmp_path / "out"
    rc = main(["--base_model", str(tiny_wan), "--train_json", str(tmp_path / "enc.json"),
               "--output_dir", str(out),
               "--max_steps", "20", "--learning_rate", "1e-3", "--warmup_steps", "0", "--global_batch", "2",
               "--batch_size", "2", "--lora_rank", "8", "--lora_alpha", "8", "--val_fraction", "0.25",
               "--val_every", "10", "--checkpoint_every", "10", "--num_workers", "0", "--devices", "1",
               "--accelerator", "cpu"])
    assert rc == 0
    history = json.loads((out / "val_history.json").read_text())
    print("\nWan 04_train held-out validation:", history)
    last = history[-1]
    assert last["step"] == 20 and last["reward_margin"] > 0 and last["loss"] < math.log(2)
    cfg = json.loads((out / "final_lora" / "adapter_config.json").read_text())
    assert cfg["auto_mapping"]["base_model_class"] == "WanTransformer3DModel"
    assert set(cfg["target_modules"]) == set(WanFamily.lora_targets) and cfg["r"] == 8


def _write_wan_pairs(root: Path, n: int = 12, with_image=lambda i: True) -> None:
    """``root/enc.json`` with ``n`` encoded groups of tiny-Wan latents (winner score 0.2, loser 0.6);
    group ``i`` has ``image_latents`` when ``with_image(i)``."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    groups = []
    for i in range(n):
        gid = f"g{i}"
        (root / gid).mkdir()
        w, lo = torch.randn(48, 5, 4, 4, generator=g) + 0.1, torch.randn(48, 5, 4, 4, generator=g) - 0.1
        cond = {"prompt_embeds": torch.randn(512, 32, generator=g)}
        if with_image(i):
            cond["image_latents"] = w[:, :1].clone()
        save_file(cond, str(root / gid / "condition.safetensors"))
        videos = []
        for j, (x, score) in enumerate([(w, 0.2), (lo, 0.6)]):
            save_file({"latents": x}, str(root / gid / f"v{j}.safetensors"))
            videos.append({"video_path": f"{gid}/seed_{j}.mp4", "seed": j, "consistency_score": score,
                           "motion_norm": 0.1, "motion_norm_released": 0.1,
                           "latent_path": f"{gid}/v{j}.safetensors"})
        groups.append({"group_id": gid, "prompt": PROMPT, "condition_path": f"{gid}/condition.safetensors",
                       "videos": videos})
    (root / "enc.json").write_text(json.dumps({"groups": groups}))


def test_batches_never_mix_text_and_first_frame_pairs(tiny_wan, tmp_path, caplog):
    """Groups with and without image latents and batch_size 2: an error before training (exit 2),
    never a batch whose image latents default_collate silently drops (or a KeyError mid-run)."""
    from torch.utils.data import default_collate

    from train_dpo.dataset import collate_pairs

    with_img = {"latents_w": torch.zeros(1), "group_id": "a", "image_latents": torch.zeros(1)}
    without = {"latents_w": torch.zeros(1), "group_id": "b"}
    assert "image_latents" not in default_collate([without, with_img])  # what happened before
    with pytest.raises(ValueError, match="group a.*group b"):
        collate_pairs([without, with_img])
    assert collate_pairs([with_img, with_img])["image_latents"].shape == (2, 1)
    _write_wan_pairs(tmp_path, n=4, with_image=lambda i: i % 2 == 1)
    main = runpy.run_path(str(REPO / "train_dpo" / "Wan2.2-TI2V-5B_lora" / "04_train.py"))["main"]
    rc = main(["--base_model", str(tiny_wan), "--train_json", str(tmp_path / "enc.json"),
               "--output_dir", str(tmp_path / "out"), "--max_steps", "2", "--global_batch", "2",
               "--batch_size", "2", "--lora_rank", "4", "--lora_alpha", "4", "--val_fraction", "0",
               "--num_workers", "0", "--devices", "1", "--accelerator", "cpu", "--loggers"])
    assert rc == 2 and "mix groups with image latents" in caplog.text


def test_scheduler_without_flow_shift_is_a_configuration_error(tiny_wan, tmp_path, caplog):
    """A Wan folder whose scheduler config has no flow_shift: 04_train.py exits 2 naming the problem
    (a KeyError used to escape the command line as a traceback, exit 1)."""
    folder = tmp_path / "wan"
    shutil.copytree(tiny_wan, folder)
    cfg_path = folder / "scheduler" / "scheduler_config.json"
    cfg = json.loads(cfg_path.read_text())
    del cfg["flow_shift"]
    cfg_path.write_text(json.dumps(cfg))
    _write_wan_pairs(tmp_path, n=2)
    main = runpy.run_path(str(REPO / "train_dpo" / "Wan2.2-TI2V-5B_lora" / "04_train.py"))["main"]
    rc = main(["--base_model", str(folder), "--train_json", str(tmp_path / "enc.json"),
               "--output_dir", str(tmp_path / "out"), "--devices", "1", "--accelerator", "cpu", "--loggers"])
    assert rc == 2 and "no flow_shift" in caplog.text
