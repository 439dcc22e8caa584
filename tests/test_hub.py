"""utils/hub.py: a hub model that is not cached gives a plain, immediate error (offline or unreachable)."""

import time

import pytest

from utils.hub import ModelNotAvailableError, check_hub_model

REPO_ID = "videogpa-tests/not-a-cached-model"


def test_offline_not_cached_fails_at_once_naming_the_fix(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(ModelNotAvailableError) as e:
        check_hub_model(REPO_ID, ("model_index.json",), "CogVideoX model", "--base_model")
    assert time.perf_counter() - t0 < 5
    msg = str(e.value)
    for needle in ("not in the local Hugging Face cache", "HF_HUB_OFFLINE is set", "HF_HOME",
                   f"huggingface-cli download {REPO_ID}", "--base_model /path/to/not-a-cached-model"):
        assert needle in msg


def test_unreachable_hub_and_unknown_repo(monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)

    def unreachable(*a, **k):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", unreachable)
    with pytest.raises(ModelNotAvailableError, match="cannot be reached .*ConnectionError.*HF_HUB_OFFLINE=1"):
        check_hub_model(REPO_ID, ("config.json",), "VGGT model", "--vggt_model")

    RepositoryNotFoundError = type("RepositoryNotFoundError", (Exception,), {})  # as huggingface_hub names it

    def missing(*a, **k):
        raise RepositoryNotFoundError("404")

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", missing)
    with pytest.raises(ModelNotAvailableError, match="neither a local path nor a hub repository"):
        check_hub_model(REPO_ID, ("config.json",), "VGGT model", "--vggt_model")


def test_cogvideox_and_vggt_loaders_use_it(monkeypatch, tmp_path):
    from generate.model_defaults import read_model_defaults
    from generate.pipeline import GenerationConfigError
    from vggt.hub import load_vggt

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(GenerationConfigError, match="not in the local Hugging Face cache"):
        read_model_defaults(REPO_ID)
    with pytest.raises(FileNotFoundError, match="VGGT model .* HF_HUB_OFFLINE is set"):
        load_vggt(REPO_ID)
    check_hub_model(tmp_path, ("model_index.json",), "CogVideoX model", "--base_model")  # a local path: fine
