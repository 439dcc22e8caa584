"""utils/jobs.py: one shard assignment, one shard file name, one merge (checks, earlier names)."""

import json

import pytest

from utils.io_utils import JSONInputError
from utils.jobs import ShardError, find_shards, launch_defaults, merge_shard_files, shard_path, shard_range


def test_assignment_covers_every_item_exactly_once_in_order():
    for n in (0, 1, 2, 5, 7, 16, 101):
        for k in (1, 2, 3, 4, 8, 16, 17):
            parts = [list(shard_range(n, i, k)) for i in range(k)]
            assert sum(parts, []) == list(range(n))  # each item once, concatenation = input order
            assert max(map(len, parts)) - min(map(len, parts)) <= 1
            assert [len(p) for p in parts] == sorted((len(p) for p in parts), reverse=True)
    assert list(shard_range(10, 1, 4)) == [3, 4, 5]  # 3, 3, 2, 2
    for bad in ((4, 4), (-1, 2), (0, 0)):
        with pytest.raises(ShardError, match="shard_index"):
            shard_range(5, *bad)


def _write(path, doc):
    path.write_text(json.dumps(doc))
    return path


def test_shard_name_find_and_merge(tmp_path):
    out = tmp_path / "out.json"
    assert shard_path(out, 2, 4) == tmp_path / "out.shard2of4.json"
    with pytest.raises(ShardError, match="no shard files"):
        find_shards(out)
    docs = [{"items": list(shard_range(5, i, 3)), "settings": {"a": 1}} for i in range(3)]
    files = [_write(shard_path(out, i, 3), d) for i, d in enumerate(docs)]
    _write(tmp_path / "other.shard0of2.json", {})  # another job's shard: ignored
    assert find_shards(out) == files and find_shards(out, 3) == files

    def combine(ds):
        return {"items": sum((d["items"] for d in ds), [])}

    merged = merge_shard_files(find_shards(out), out, combine, lambda d: d["settings"])
    assert merged == json.loads(out.read_text()) == {"items": [0, 1, 2, 3, 4]}

    # other settings in one shard: refused, naming both files and the key
    _write(files[1], {**docs[1], "settings": {"a": 2}})
    with pytest.raises(ShardError, match=r"different settings \(\['a'\]\)") as e:
        merge_shard_files(files, tmp_path / "m.json", combine, lambda d: d["settings"])
    assert "out.shard1of3.json" in str(e.value) and not (tmp_path / "m.json").exists()

    # a missing shard: refused, naming the missing file; an exit-2 error like a bad JSON input
    files[1].unlink()
    with pytest.raises(ShardError, match="not found: .*out.shard1of3.json"):
        find_shards(out)
    with pytest.raises(JSONInputError, match="not found"):
        find_shards(out, 4)
    with pytest.raises(ShardError, match="not found"):
        merge_shard_files(files, tmp_path / "m.json", combine)


def test_earlier_shard_names_still_found(tmp_path):
    out = tmp_path / "scored.json"
    old = [_write(tmp_path / f"scored.shard{i}-of-2.json", {"i": i}) for i in range(2)]
    assert find_shards(out) == old  # the scorer's earlier name
    new0 = _write(shard_path(out, 0, 2), {"i": 0})
    with pytest.raises(ShardError, match="two names"):
        find_shards(out)
    old[0].unlink()
    assert find_shards(out, 2) == [new0, old[1]]  # a mix of names, one per shard, is fine


def test_launch_defaults_report_inconsistent_variables(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(k, raising=False)
    assert launch_defaults() == (launch_defaults()[0], None) and launch_defaults()[0].num_shards == 1
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "2")
    info, error = launch_defaults()
    assert info.num_shards == 1 and "RANK=3" in error and "WORLD_SIZE=2" in error
