"""The judge measures what the server measures: workload timing, the chat template, logged samples, targets."""

import json
import re

import pytest
import torch
import yaml

from cli_runner import run_cli
from compressor.core.errors import UserError
from compressor.data.calibration import CalibrationSpec, calibration_texts, calibration_windows
from compressor.data.corpus import load_corpus
from compressor.evaluate.judge import judge
from compressor.evaluate.spec import EvalSpec, check_folders
from compressor.evaluate.suite import include_folder, load_suite, run_suite
from compressor.evaluate.workload import WorkloadTimer, generated_tokens, summarize
from compressor.export.targets import load_target
from compressor.models.sources import load_model
from compressor.models.tiny import CHATML, byte_tokenizer, save_tiny

TINY = {"latency": {"prompt_tokens": 8, "new_tokens": 2, "runs": 1, "warmup": 0}}


@pytest.fixture(scope="module")
def chat_dir(tmp_path_factory):
    return save_tiny("llama", tmp_path_factory.mktemp("tiny-chat"), chat_template=CHATML)


def _suite(tmp_path, **fields):
    path = tmp_path / "suite.yaml"
    data = {"name": "s", "tasks": [{"task": "minimal_pairs", "metric": "acc", "limit": 4},
                                   {"task": "retrieval", "metric": "exact_match", "limit": 3}], **fields}
    path.write_text(yaml.safe_dump(data))
    return path


def test_generated_tokens_count_up_to_eos_and_never_the_padding():
    pad, eos = 0, {2}
    rows = [[5, 6, 7, 8], [5, 2, 0, 0], [5, 0, 0, 0], [2, 0, 0, 0]]
    assert generated_tokens(rows, pad, eos) == 4 + 2 + 1 + 1
    assert generated_tokens([[5, 2, 2, 2]], 2, {2}) == 2  # pad == eos: the first one was generated


class FakeLM:
    """An lm-eval model whose generate call takes known (fake) time and returns known rows."""

    def __init__(self, clock):
        self.tokenizer = byte_tokenizer()  # pad = eos = <|im_end|> (2)
        self.clock = clock

    def _model_generate(self, context, max_length, stop, **kwargs):
        self.clock.now += 0.5  # the engine's wall time for this batch
        tail = torch.tensor([[7, 8, 9, 2], [7, 2, 2, 2]])
        return torch.cat([context, tail], dim=1)


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def test_workload_time_per_token_is_wall_time_over_generated_tokens_only():
    clock = Clock()
    lm = FakeLM(clock)
    timer = WorkloadTimer(clock=clock)
    timer.wrap_hflm(lm)
    context = torch.zeros((2, 30), dtype=torch.long)  # prompt tokens are not output tokens
    for _ in range(3):
        lm._model_generate(context, 34, [])
    figures = summarize(timer.raw())
    assert figures["tokens"] == 3 * (4 + 2) and figures["calls"] == 3 and figures["requests"] == 6
    assert figures["seconds"] == pytest.approx(1.5)
    assert figures["tpt_ms"] == pytest.approx(1500 / 18)
    assert figures["output_tokens_per_s"] == pytest.approx(18 / 1.5)
    assert summarize({"seconds": 0, "tokens": 0, "requests": 0, "calls": 0}) is None


def test_the_chat_template_reaches_generative_tasks_only(tmp_path, chat_dir):
    suite = load_suite(_suite(tmp_path, chat_template=True))
    model, tokenizer = load_model(chat_dir, torch.device("cpu"))
    run = run_suite(model, tokenizer, suite, batch_size=2, log_samples=True)
    generated = run.samples["retrieval"][0]["arguments"][0][0]
    assert generated.startswith("<|im_start|>user\nThere is important information")
    assert generated.endswith("<|im_start|>assistant\n")
    scored = run.samples["minimal_pairs"][0]["arguments"][0][0]
    assert "<|im_start|>" not in scored  # multiple choice stays raw unless the task asks
    assert run.workload["calls"] >= 1 and run.workload["tokens"] > 0 and run.workload["requests"] == 3

    raw = run_suite(model, tokenizer, load_suite(_suite(tmp_path)), batch_size=2, log_samples=True)
    assert not raw.samples["retrieval"][0]["arguments"][0][0].startswith("<|im_start|>")


def test_a_suite_asking_for_the_template_refuses_a_tokenizer_without_one(tmp_path, tiny_llama_dir):
    spec = EvalSpec(suite=str(_suite(tmp_path, chat_template=True)))
    with pytest.raises(UserError, match="tokenizer has no chat template, and suite s runs retrieval through it"):
        check_folders(spec, [tiny_llama_dir])
    check_folders(spec.model_copy(update={"chat_template": False}), [tiny_llama_dir])


def test_workload_timing_is_what_the_score_uses(tmp_path, chat_dir):
    spec = EvalSpec(suite=str(_suite(tmp_path, timing="workload")), **TINY)
    result = judge(chat_dir, chat_dir, spec, torch.device("cpu"), samples_dir=tmp_path / "samples")
    for who in ("model", "baseline"):
        m = result[who]
        assert m["timing"] == "workload" and m["tpt_ms"] == m["workload"]["tpt_ms"] > 0
        assert m["synthetic_tpt_ms"] == m["latency"]["1"]["tpt_ms_median"]
        assert m["workload"]["output_tokens_per_s"] == pytest.approx(1000 / m["tpt_ms"])
    assert result["timing"] == "workload" and result["settings"]["suite"].endswith("suite.yaml")
    assert result["speed_norm"] == pytest.approx(1 - result["model"]["tpt_ms"] / result["baseline"]["tpt_ms"])
    logged = sorted(p.relative_to(tmp_path / "samples").as_posix() for p in (tmp_path / "samples").rglob("*.jsonl"))
    assert logged == ["baseline/minimal_pairs.jsonl", "baseline/retrieval.jsonl",
                      "model/minimal_pairs.jsonl", "model/retrieval.jsonl"]
    row = json.loads((tmp_path / "samples" / "model" / "retrieval.jsonl").read_text().splitlines()[0])
    assert row["prompt"].startswith("There is important") and row["target"] and "exact_match" in row

    synthetic = judge(chat_dir, None, spec.model_copy(update={"timing": "synthetic"}), torch.device("cpu"))
    assert synthetic["model"]["tpt_ms"] == synthetic["model"]["synthetic_tpt_ms"]


def test_max_gen_toks_caps_generative_tasks(tmp_path):
    suite = load_suite(_suite(tmp_path))
    with include_folder(suite, max_gen_toks=5) as folder:
        assert yaml.safe_load((folder / "retrieval.yaml").read_text())["generation_kwargs"]["max_gen_toks"] == 5
        assert "generation_kwargs" not in yaml.safe_load((folder / "minimal_pairs.yaml").read_text())
    with include_folder(suite, max_gen_toks=16384) as folder:  # a cap never raises a task's own limit
        assert yaml.safe_load((folder / "retrieval.yaml").read_text())["generation_kwargs"]["max_gen_toks"] == 12


@pytest.mark.parametrize("fields, message", [
    ({"tasks": [{"task": "no_such_task", "metric": "acc"}]}, "tasks[0].task: no task 'no_such_task'"),
    ({"timing": "per-request"}, "timing: Input should be 'synthetic' or 'workload'"),
    ({"timing": "workload", "tasks": [{"task": "minimal_pairs", "metric": "acc"}]},
     "timing: workload times the suite's generative tasks and it has none"),
])
def test_bad_suites_are_one_line_errors_naming_the_field(tmp_path, fields, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "bad", "tasks": [{"task": "minimal_pairs", "metric": "acc"}], **fields}))
    with pytest.raises(UserError, match=re.escape(f"{path}: {message}")):
        load_suite(path)


def test_targets_state_the_servers_evaluation(tmp_path):
    lg = load_target("lg-aimers")
    assert lg.eval.suite == "lg-aimers" and lg.eval.chat_template and lg.eval.timing == "workload"
    assert lg.eval.runtime == "vllm" and lg.eval.max_gen_toks == 16384
    assert lg.eval.engine.gpu_memory_utilization == 0.85 and lg.eval.engine.max_model_len == "config"
    base = yaml.safe_load(open(lg.source))
    for bad, message in ((None, "eval: target t states no evaluation profile"),
                         ({"runtime": "torch"}, "eval.suite: Field required"),
                         ({"suite": "nowhere"}, "eval.suite: ")):
        path = tmp_path / "t.yaml"
        data = {**base, "name": "t"}
        data.pop("eval")
        if bad is not None:
            data["eval"] = bad
        path.write_text(yaml.safe_dump(data))
        if bad is None:
            from compressor.export.targets import eval_profile

            with pytest.raises(UserError, match=re.escape(f"{path}: {message}")):
                eval_profile(load_target(path))
        else:
            with pytest.raises(UserError, match=re.escape(f"{path}: {message}")) as raised:
                load_target(path)
            assert "nowhere" not in str(bad) or "nowhere.yaml: no such suite" in str(raised.value)


def test_eval_with_a_target_takes_its_settings_and_the_command_line_overrides(monkeypatch, capsys, tmp_path,
                                                                             chat_dir):
    target = tmp_path / "server.yaml"
    target.write_text(yaml.safe_dump({"name": "server", "eval": {
        "suite": str(_suite(tmp_path)), "runtime": "torch", "chat_template": True, "timing": "workload",
        "max_gen_toks": 4}}))
    code, out, err = run_cli(monkeypatch, capsys, "eval", str(chat_dir), "--target", str(target), "--no-baseline",
                             "--runs", "1", "--prompt-tokens", "8", "--new-tokens", "2", "--limit", "2",
                             "--log-samples", str(tmp_path / "s"), "--json")
    assert code == 0, err
    ev = json.loads(out)["eval"]
    assert ev["settings"]["target"] == "server" and ev["settings"]["chat_template"] is True
    assert ev["settings"]["max_gen_toks"] == 4 and ev["timing"] == "workload"
    prompt = json.loads((tmp_path / "s" / "model" / "retrieval.jsonl").read_text().splitlines()[0])["prompt"]
    assert prompt.startswith("<|im_start|>user")

    code, out, err = run_cli(monkeypatch, capsys, "eval", str(chat_dir), "--target", str(target), "--no-baseline",
                             "--runs", "1", "--prompt-tokens", "8", "--new-tokens", "2", "--limit", "2",
                             "--timing", "synthetic", "--no-chat-template", "--json")
    assert code == 0, err
    ev = json.loads(out)["eval"]
    assert ev["timing"] == "synthetic" and ev["settings"]["chat_template"] is False


def test_eager_keeps_the_targets_engine_and_reaches_the_vllm_engine_arguments(tmp_path):
    from compressor.cli.options import eval_spec_from_options, target_eval_settings
    from compressor.evaluate.measure_vllm import engine_args

    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"max_position_embeddings": 8192}))
    common = dict(runtime="vllm", suite="quick", limit=None, batch_size=8, prompt_tokens=16, new_tokens=4, runs=1,
                  batch_sizes="1", layers=(target_eval_settings("lg-aimers"),))
    plain = eval_spec_from_options(False, **common, explicit={"runtime"})
    eager = eval_spec_from_options(False, **common, eager=True, explicit={"runtime", "eager"})
    assert "enforce_eager" not in engine_args(plain, folder)
    assert engine_args(eager, folder) == {"max_model_len": 8192, "gpu_memory_utilization": 0.85,
                                          "enforce_eager": True}


def test_mixed_calibration_interleaves_the_corpora_and_the_template_wraps_each_document():
    english, korean = load_corpus("calibration", corpus="en"), load_corpus("calibration", corpus="ko")
    mixed = load_corpus("calibration", corpus="mixed")
    assert mixed[:4] == [english[0], korean[0], english[1], korean[1]] and len(mixed) == len(english) + len(korean)
    tokenizer = byte_tokenizer(CHATML)
    spec = CalibrationSpec(corpus="ko", chat_template=True, samples=3, seq_len=64)
    windows = calibration_windows(tokenizer, spec)
    assert len(windows) == 3 and all(w.shape == (1, 64) for w in windows)
    assert tokenizer.decode(windows[0][0]).startswith("<|im_start|>user\n")
    texts = calibration_texts(tokenizer, spec)
    assert all(t.startswith("<|im_start|>user\n") and t.endswith("<|im_end|>\n<|im_start|>assistant\n")
               for t in texts)
    assert texts[0] == f"<|im_start|>user\n{korean[0]}<|im_end|>\n<|im_start|>assistant\n"
    with pytest.raises(UserError, match="tokenizer has no chat template"):
        calibration_windows(byte_tokenizer(), spec)


def test_english_calibration_windows_are_unchanged_by_the_corpus_option():
    tokenizer = byte_tokenizer()
    plain = calibration_windows(tokenizer, CalibrationSpec(samples=4, seq_len=32))
    explicit = calibration_windows(tokenizer, CalibrationSpec(samples=4, seq_len=32, corpus="en"))
    assert all(torch.equal(a, b) for a, b in zip(plain, explicit))
    first = sorted(load_corpus("calibration"), key=len)  # the first window is a cut of one whole document
    assert any(tokenizer.decode(plain[0][0]) in doc for doc in first)


def test_recipe_calibration_settings_are_checked_before_any_weight(tmp_path, tiny_llama_dir):
    from compressor.recipe import check_against_config, parse_recipe
    from transformers import AutoConfig

    recipe = parse_recipe({"name": "r", "eval": {"enabled": False}, "stages": [
        {"stage": "drop_layers", "count": 1, "by": "angular",
         "calibration": {"corpus": "mixed", "chat_template": True}}]})
    with pytest.raises(UserError, match=r"stages\[0\]\.calibration\.chat_template: .* has no chat template"):
        check_against_config(recipe, AutoConfig.from_pretrained(tiny_llama_dir), "r.yaml", tiny_llama_dir)
    with pytest.raises(UserError, match=r"stages\[0\]\.calibration\.split: unknown corpus split 'test'"):
        parse_recipe({"name": "r", "stages": [{"stage": "drop_layers", "count": 1, "by": "angular",
                                               "calibration": {"split": "test"}}]})


def test_the_lg_aimers_suite_weights_tasks_like_the_servers_benchmarks():
    suite = load_suite("lg-aimers")
    assert suite.chat_template and suite.timing == "workload"
    weights = {t.task: t.weight for t in suite.tasks}
    assert weights == {"ko_mc": 2822 + 2587, "ko_longrag": 600, "ko_particles": 80, "ko_bpb": 0}
    assert {t.task: t.chance for t in suite.weighted()} == {"ko_mc": 0.25, "ko_longrag": 0.0, "ko_particles": 0.5}
    assert [t.task for t in suite.generative_tasks()] == ["ko_mc", "ko_longrag"]
    assert not suite.uses_chat_template(next(t for t in suite.tasks if t.task == "ko_particles"))
    assert {t.task for t in load_suite("bilingual").tasks} >= {"ko_mc_ll", "minimal_pairs", "retrieval"}


def test_korean_text_reaches_the_model_unchanged_through_the_chat_template(tmp_path, chat_dir):
    path = tmp_path / "ko.yaml"
    path.write_text(yaml.safe_dump({"name": "ko", "chat_template": True, "tasks": [
        {"task": "ko_mc", "metric": "exact_match", "limit": 2}, {"task": "ko_particles", "metric": "acc", "limit": 2}]}))
    model, tokenizer = load_model(chat_dir, torch.device("cpu"))
    run = run_suite(model, tokenizer, load_suite(path), batch_size=2, log_samples=True)
    first = json.loads(open(data_file("ko_mc.jsonl")).readline())
    prompt = run.samples["ko_mc"][0]["arguments"][0][0]
    assert prompt.startswith("<|im_start|>user\n" + first["question"] + "\nA. " + first["A"])
    particles = json.loads(open(data_file("ko_particles.jsonl")).readline())
    choices = [a[1] for a in run.samples["ko_particles"][0]["arguments"]]
    assert [c.strip() for c in choices] == [particles["good"], particles["bad"]]
    assert any(k.startswith("exact_match") and 0 <= v <= 1 for k, v in run.tasks["ko_mc"].items())


def data_file(name: str):
    from compressor.core.resources import eval_dir

    return eval_dir() / "data" / name
