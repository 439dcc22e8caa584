"""benchmarks/results_io.py: a benchmark run does not overwrite the committed results unless asked."""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import results_io  # noqa: E402


def test_results_written_only_with_write_or_out(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(results_io, "RESULTS", tmp_path / "committed")
    p = argparse.ArgumentParser()
    results_io.add_output_args(p, "bench_x")
    assert results_io.save_results(p.parse_args([]), "bench_x", {"a": 1}) is None
    assert not (tmp_path / "committed").exists() and "--write" in capsys.readouterr().out
    assert results_io.save_results(p.parse_args(["--out", str(tmp_path / "o.json")]), "bench_x", {"a": 1})
    assert (tmp_path / "o.json").read_text() == '{\n  "a": 1\n}\n' and not (tmp_path / "committed").exists()
    assert results_io.save_results(p.parse_args(["--write"]), "bench_x", {"a": 2}) == tmp_path / "committed" / "bench_x.json"


def test_results_are_strict_json(tmp_path):
    import json

    p = argparse.ArgumentParser()
    results_io.add_output_args(p, "bench_x")
    out = results_io.save_results(p.parse_args(["--out", str(tmp_path / "o.json")]), "bench_x",
                                  {"a": float("nan"), "b": [1.5, float("inf")]})
    assert json.loads(out.read_text(), parse_constant=lambda c: 1 / 0) == {"a": None, "b": [1.5, None]}
    assert [f.name for f in tmp_path.iterdir()] == ["o.json"]  # no temporary file left
