import json
import shutil

from data_prep.captions_to_prompts import captions_to_prompts, main as captions_main
from data_prep.generate_i2v_prompts import generate_i2v_prompts, main as i2v_main
from data_prep.prompts import CAMERA_MOTION_PHRASES, prompt_id


def test_prompt_id_is_stable_unique_and_file_safe(fixtures_dir):
    captions = json.loads((fixtures_dir / "dl3dv_captions_8.json").read_text())
    ids = [prompt_id(k) for k in captions]
    assert len(set(ids)) == len(ids) == 8
    assert all(c.isalnum() or c in "_-" for i in ids for c in i)
    assert prompt_id("1K/abc/images_8") == prompt_id("1K/abc/images_8")
    assert prompt_id("1K/abc/images_8") != prompt_id("1K/abd/images_8")


def test_captions_to_prompts_real_captions(fixtures_dir, tmp_path):
    src = fixtures_dir / "dl3dv_captions_8.json"
    captions = json.loads(src.read_text())
    out = captions_to_prompts(captions, num_prompts=3, add_motion=True)
    assert len(out) == 3
    for i, (key, entry) in enumerate(zip(list(captions)[:3], out.values())):
        assert entry["source_key"] == key
        assert entry["text_prompt"].startswith(" ".join(captions[key].split())[:50])
        assert entry["text_prompt"].endswith(CAMERA_MOTION_PHRASES[i])
    # seeded shuffle is reproducible and differs from file order
    a = captions_to_prompts(captions, num_prompts=8, seed=1)
    b = captions_to_prompts(captions, num_prompts=8, seed=1)
    assert list(a) == list(b) and set(a) == {prompt_id(k) for k in captions}
    dst = tmp_path / "prompts.json"
    assert captions_main([str(src), str(dst), "--num_prompts", "2"]) == 0
    assert len(json.loads(dst.read_text())) == 2


def test_captions_bad_inputs(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert captions_main([str(bad), str(tmp_path / "o.json")]) == 2
    assert not (tmp_path / "o.json").exists()
    out = captions_to_prompts({"a": "", "b": 3, "c": "ok"})
    assert [v["text_prompt"] for v in out.values()] == ["ok"]


def test_generate_i2v_prompts(fixtures_dir, tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for p in (fixtures_dir / "images").glob("*.png"):
        shutil.copy(p, imgs / p.name)
    (imgs / "broken.png").write_bytes(b"not an image")
    out = generate_i2v_prompts(imgs, captions={"coffee.png": "A cup of coffee on a table"})
    assert set(out) == {"chelsea", "coffee"}
    assert out["coffee"]["text_prompt"].startswith("A cup of coffee on a table.")
    assert out["chelsea"]["image_prompt"] == str((imgs / "chelsea.png").resolve())
    assert all(any(v["text_prompt"].endswith(m) for m in CAMERA_MOTION_PHRASES) for v in out.values())
    dst = tmp_path / "p.json"
    assert i2v_main([str(imgs), str(dst), "--relative_to", str(tmp_path)]) == 0
    assert json.loads(dst.read_text())["chelsea"]["image_prompt"] == "imgs/chelsea.png"
    assert i2v_main([str(tmp_path / "missing"), str(dst)]) == 2


def test_i2v_prompts_read_folder_captions(fixtures_dir, tmp_path):
    shutil.copy(fixtures_dir / "images" / "coffee.png", tmp_path / "coffee.png")
    (tmp_path / "captions.json").write_text(json.dumps({"coffee": "Latte art in a white cup"}))
    out = generate_i2v_prompts(tmp_path)
    assert out["coffee"]["text_prompt"] == "Latte art in a white cup. " + CAMERA_MOTION_PHRASES[0]
