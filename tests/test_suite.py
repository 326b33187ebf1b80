import json
import re

import pytest
import torch
import yaml

from compressor.core.errors import UserError
from compressor.evaluate import baseline_cache
from compressor.evaluate.judge import judge
from compressor.evaluate.suite import aggregate, include_folder, load_suite, metric_value, run_suite_torch
from compressor.models.sources import load_model
from compressor.models.tiny import save_tiny
from compressor.evaluate.spec import EvalSpec

QUICK = {"suite": "quick", "limit": 2, "latency": {"prompt_tokens": 8, "new_tokens": 2, "runs": 1, "warmup": 0}}


def test_builtin_suites_load_and_name_local_tasks():
    suite = load_suite("default")
    assert [t.task for t in suite.tasks] == ["minimal_pairs", "retrieval", "corpus_ppl"]
    assert [t.task for t in suite.weighted()] == ["minimal_pairs", "retrieval"]
    with include_folder(suite) as folder:
        for name in ("minimal_pairs", "retrieval", "corpus_ppl"):
            config = yaml.safe_load((folder / f"{name}.yaml").read_text())
            data = config["dataset_kwargs"]["data_files"]["test"]
            assert data.startswith("/") and open(data).readline()


def test_generated_data_sizes():
    suite = load_suite("default")
    with include_folder(suite) as folder:
        counts = {}
        for name in ("minimal_pairs", "retrieval"):
            path = yaml.safe_load((folder / f"{name}.yaml").read_text())["dataset_kwargs"]["data_files"]["test"]
            counts[name] = sum(1 for _ in open(path))
    assert counts["minimal_pairs"] >= 300 and counts["retrieval"] >= 100
    lengths = [json.loads(line)["n_tokens"] for line in open(path)]  # the retrieval file, read last
    assert 512 <= min(lengths) and max(lengths) <= 2048 and max(lengths) > 1800


@pytest.mark.parametrize("content, message", [
    ({"name": "s", "tasks": [{"task": "a", "metric": "acc", "bogus": 1}]}, "tasks[0].bogus: unknown key"),
    ({"name": "s", "tasks": [{"task": "a", "metric": "acc", "weight": 0}]}, "at least one task needs weight > 0"),
    ({"name": "s", "tasks": []}, "tasks: List should have at least 1 item"),
])
def test_bad_suites_name_file_and_field(tmp_path, content, message):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(UserError, match=re.escape(message)):
        load_suite(path)
    with pytest.raises(UserError, match="no such suite"):
        load_suite("nonexistent")


def test_perf_is_the_weighted_mean():
    suite = load_suite("default")
    per_task = {"minimal_pairs": {"acc,none": 0.8}, "retrieval": {"exact_match,first-token": 0.4},
                "corpus_ppl": {"word_perplexity,none": 100.0}}
    assert aggregate(suite, per_task) == pytest.approx(0.6)
    with pytest.raises(KeyError):
        metric_value({"acc,none": 1.0}, "exact_match")


def test_random_weights_score_near_chance_on_minimal_pairs(tiny_llama_dir):
    model, tokenizer = load_model(tiny_llama_dir, torch.device("cpu"))
    suite = load_suite("default")
    suite.tasks = [t for t in suite.tasks if t.task == "minimal_pairs"]
    acc = run_suite_torch(model, tokenizer, suite)["minimal_pairs"]["acc,none"]
    assert 0.4 < acc < 0.65


def test_baseline_cache_hits_and_is_invalidated_by_a_new_source(tmp_path, tiny_llama_dir, monkeypatch):
    monkeypatch.setenv("COMPRESSOR_BASELINES", str(tmp_path / "cache"))
    suite = tmp_path / "mc.yaml"
    suite.write_text(yaml.safe_dump({"name": "mc", "tasks": [{"task": "minimal_pairs", "metric": "acc"}]}))
    quick = {**QUICK, "suite": str(suite)}
    spec = EvalSpec(**quick)
    first = judge(tiny_llama_dir, tiny_llama_dir, spec, torch.device("cpu"))
    again = judge(tiny_llama_dir, tiny_llama_dir, spec, torch.device("cpu"))
    assert not first["baseline_from_cache"] and again["baseline_from_cache"]
    assert again["baseline"]["perf"] == first["baseline"]["perf"]
    fresh = judge(tiny_llama_dir, tiny_llama_dir, spec, torch.device("cpu"), fresh_baseline=True)
    assert not fresh["baseline_from_cache"]

    other = save_tiny("llama", tmp_path / "other", seed=1)
    changed = judge(tiny_llama_dir, other, spec, torch.device("cpu"))
    assert not changed["baseline_from_cache"] and changed["baseline_key"] != first["baseline_key"]
    settings_changed = judge(tiny_llama_dir, tiny_llama_dir, EvalSpec(**{**quick, "limit": 3}), torch.device("cpu"))
    assert not settings_changed["baseline_from_cache"]
    assert len(list((tmp_path / "cache").glob("*.json"))) == 3


def test_cache_key_covers_machine_and_runtime():
    a = baseline_cache.cache_key("h", "s", "torch", {}, "cpu")
    assert a != baseline_cache.cache_key("h", "s", "vllm", {}, "cpu")
    assert a != baseline_cache.cache_key("h2", "s", "torch", {}, "cpu")
    assert json.dumps(baseline_cache.machine_id("cpu"))
