"""`compressor check DIR --runtime R`: does R load the output and generate what the tool itself generates?

The reference is this tool's own greedy output: the folder loaded with `load_model` on the chosen device
(`auto`: CUDA when available, else CPU), weights upcast to fp32 (fp16/bf16 values are exact in fp32). A quantized folder (config.json has a
quantization_config) checked in transformers is the exception: it runs dequantized and re-quantizes
activations, every precision rounds those steps differently (fp32 vs bf16 flips SmolLM2 W8A8's greedy
picks within a few tokens), so its reference runs in the stored dtype, the precision the runtime runs it
in. vLLM's int8 kernels quantize and accumulate in fp32: for them the fp32 reference is the closer one
(SmolLM2 W8A8: mean prefix agreement 0.60 against fp32, 0.39 against bf16).
The runtime gets the reference's prompt token ids, so both sides run the same ids; its own tokenization
of the prompt texts is compared separately (tokenizer drift between transformers versions is a real
trap). Greedy continuations are compared position by position and up to the first divergence; the first
step's logits (log-probs for vLLM) too.
For onnxruntime the artifact is the ONNX export beside the model (DIR/onnx/model.onnx, `compressor export onnx`)
run with plain onnxruntime; its tokenizer is the one the export wrote.
"""

import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from compressor.core.errors import CheckFailed, UserError
from compressor.core.layout import ONNX_FILE, SCORER_FILE, resolve
from compressor.export.parity import DEFAULT_MIN_AGREEMENT, PROMPTS, compare, greedy
from compressor.models.checkpoint import check_model_folder
from compressor.models.sources import load_model, pick_device
from compressor.runtimes.onnx_decoder import OnnxDecoder, open_session
from compressor.runtimes.vllm_runtime import prepare, run_vllm

RUNTIMES = ("transformers", "vllm", "onnxruntime")
TOP_LOGPROBS = 5


def _quiet(message: str) -> None:
    pass


def _one_line(text: str, limit: int = 400) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def is_quantized(folder: Path) -> bool:
    try:
        return "quantization_config" in json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return False


def reference(folder: Path, prompts: list[str], max_tokens: int, dtype="float32", device=None) -> dict:
    """The tool's own greedy output: `load_model` on `device` (a torch.device; default CPU) in `dtype` (fp32, or
    "auto": as stored)."""
    import torch
    import transformers

    device = device if device is not None else torch.device("cpu")
    start = time.perf_counter()
    try:
        model, tokenizer = load_model(folder, device, dtype if dtype == "auto" else getattr(torch, dtype))
    except Exception as error:  # corrupt weights, unknown architecture, ...: one line for the user
        raise CheckFailed(f"{folder}: does not load in transformers {transformers.__version__} (reference): "
                          f"{_one_line(f'{type(error).__name__}: {error}')}") from None
    prompt_ids = [tokenizer(p).input_ids for p in prompts]
    runs = greedy(model, prompt_ids, max_tokens)
    texts = [tokenizer.decode(r["token_ids"]) for r in runs]
    dtype = str(model.dtype).removeprefix("torch.")
    del model
    if device.type == "cuda":  # a vLLM engine on the same GPU sizes itself by the memory left free
        torch.cuda.empty_cache()
    return {"prompt_token_ids": prompt_ids, "runs": runs, "texts": texts, "dtype": dtype, "device": str(device),
            "versions": {"transformers": str(transformers.__version__), "torch": str(torch.__version__)},
            "seconds": round(time.perf_counter() - start, 2)}


_TRANSFORMERS_MAIN = '''
def main(request_path, result_path):
    import json, time
    import torch, transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    request = json.load(open(request_path))
    start = time.perf_counter()
    model, info = AutoModelForCausalLM.from_pretrained(request["model"], dtype="auto", output_loading_info=True)
    problems = []
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        names = sorted(k if isinstance(k, str) else k[0] for k in (info or {}).get(key) or [])
        if names:
            problems.append(f"{len(names)} {key.replace('_', ' ')} (e.g. {names[0]})")
    if problems:  # transformers only warns, then runs on randomly initialised weights
        raise RuntimeError("weights do not match config.json: " + ", ".join(problems))
    tokenizer = AutoTokenizer.from_pretrained(request["model"])
    load_s = time.perf_counter() - start
    runs = greedy(model.eval(), request["prompt_token_ids"], request["max_tokens"])
    torch.save({"runs": runs, "texts": [tokenizer.decode(r["token_ids"]) for r in runs],
                "text_prompt_token_ids": [tokenizer(p).input_ids for p in request["prompts"]],
                "dtype": str(model.dtype).removeprefix("torch."), "load_s": load_s,
                "versions": {"transformers": str(transformers.__version__), "torch": str(torch.__version__)}}, result_path)


if __name__ == "__main__":
    import json, sys
    try:
        main(sys.argv[1], sys.argv[2])
    except Exception as error:
        json.dump({"error": f"{type(error).__name__}: {error}"}, open(sys.argv[2] + ".error.json", "w"))
        sys.exit(1)
'''


def run_transformers(folder: Path, prompts: list[str], prompt_ids: list[list[int]], max_tokens: int,
                     timeout_s: float = 1800) -> dict:
    """Stock `AutoModelForCausalLM.from_pretrained(folder, dtype="auto")` in a fresh Python, greedy on `prompt_ids`."""
    import torch

    script = "\n".join(["import torch", inspect.getsource(greedy), _TRANSFORMERS_MAIN])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with tempfile.TemporaryDirectory(prefix="compressor-check-") as tmp:
        request, result = Path(tmp) / "request.json", Path(tmp) / "result.pt"
        request.write_text(json.dumps({"model": str(Path(folder).resolve()), "prompts": prompts,
                                       "prompt_token_ids": prompt_ids, "max_tokens": max_tokens}))
        try:
            done = subprocess.run([sys.executable, "-c", script, str(request), str(result)], cwd=tmp, env=env,
                                  capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise CheckFailed(f"{folder}: transformers did not finish within {timeout_s:.0f} s") from None
        error = Path(str(result) + ".error.json")
        if done.returncode != 0 or not result.is_file():
            reason = json.loads(error.read_text())["error"] if error.is_file() else \
                ([line for line in done.stderr.splitlines() if line.strip()] or ["no output"])[-1]
            raise CheckFailed(f"{folder}: does not load in transformers (stock from_pretrained): {_one_line(reason)}")
        return torch.load(result, weights_only=True)


def vllm_check_request(folder: Path, prompts: list[str], prompt_ids: list[list[int]], max_tokens: int,
                       eager: bool = False, engine: dict | None = None) -> dict:
    """The worker request of a vLLM check; `engine`: tensor_parallel_size / gpu_memory_utilization (GPU builds)."""
    return {"model": str(folder), "max_model_len": 1024, "enforce_eager": eager, **(engine or {}),
            "generate": {"prompts": prompts, "prompt_token_ids": prompt_ids, "max_tokens": max_tokens,
                         "min_tokens": max_tokens, "logprobs": TOP_LOGPROBS}}


def run_vllm_check(folder: Path, prompts: list[str], prompt_ids: list[list[int]], max_tokens: int,
                   eager: bool = False, engine: dict | None = None) -> dict:
    request = vllm_check_request(folder, prompts, prompt_ids, max_tokens, eager, engine)
    prepare(request)  # no vLLM environment, or sizes its build cannot run: the user's setup, not a failed check
    try:
        result = run_vllm(request)
    except CheckFailed:
        raise
    except UserError as error:  # "vLLM failed on DIR: <its last error line>"
        raise CheckFailed(_one_line(str(error))) from None
    generated = result["generate"]
    return {"runs": [{"token_ids": g["token_ids"], "first_logprobs": g.get("first_logprobs")} for g in generated],
            "texts": [g["text"] for g in generated],
            "text_prompt_token_ids": [g.get("text_prompt_token_ids", g["prompt_token_ids"]) for g in generated],
            "dtype": result.get("dtype"), "load_s": result.get("load_s"), "versions": result.get("versions", {}),
            "engine": result.get("engine"), "build": result.get("build")}


def kv_cache_verdict(folder: Path, engine: dict | None) -> dict:
    """What the checkpoint asks of the KV cache (kv_cache_scheme) against what the engine allocated."""
    config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    scheme = (config.get("quantization_config") or {}).get("kv_cache_scheme")
    asked = f"{scheme.get('num_bits')}-bit {scheme.get('type')}" if scheme else None
    verdict = {"checkpoint_scheme": asked}
    if not engine:
        return {**verdict, "engine_dtype": None, "note": "this vLLM version did not report its cache"}
    used = str(engine.get("cache_dtype"))
    verdict.update(engine_dtype=used, engine_dtype_from=engine.get("cache_dtype_from"),
                   kv_cache_tokens=engine.get("kv_cache_tokens"))
    if scheme:
        verdict["used"] = used.startswith("fp8")
        if not verdict["used"]:
            verdict["note"] = f"the engine ignored the checkpoint's {asked} kv_cache_scheme: its cache is {used}"
    return verdict


def onnx_artifact(output_dir: Path, onnx: Path | None = None) -> Path:
    """The .onnx file to check: `onnx` (a file, or a folder holding model.onnx), else OUTPUT_DIR/onnx/model.onnx."""
    path = Path(onnx) if onnx else resolve(output_dir).onnx_dir
    if path.is_dir() or not path.suffix:
        path = path / ONNX_FILE
    if not path.is_file():
        if (path.parent / SCORER_FILE).is_file():
            raise CheckFailed(f"{path.parent}: holds only the prompt scorer ({SCORER_FILE}, `export onnx --scorer-only`), "
                              f"which `export onnx` checked against torch when it wrote it; the causal LM's {path.name} "
                              f"is what `check` runs (re-export without --scorer-only)")
        raise CheckFailed(f"{path}: no ONNX artifact (run `compressor export onnx {output_dir}` first)")
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise UserError("onnxruntime is not installed: pip install -e '.[onnx]' (CPU) or -e '.[gpu]' (CUDA)") from None
    return path


def run_onnxruntime(onnx_path: Path, prompts: list[str], prompt_ids: list[list[int]], max_tokens: int) -> dict:
    """Plain onnxruntime (CPU) on the exported decoder, greedy on `prompt_ids`; the export's own tokenizer."""
    import onnxruntime
    import torch
    from transformers import AutoTokenizer


    start = time.perf_counter()
    try:
        decoder = OnnxDecoder(open_session(onnx_path))
    except Exception as error:  # corrupt protobuf, missing external data, not a decoder: one line
        raise CheckFailed(f"{onnx_path}: does not load in onnxruntime {onnxruntime.__version__}: "
                          f"{_one_line(f'{type(error).__name__}: {error}')}") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(onnx_path.parent)
    except Exception as error:
        raise CheckFailed(f"{onnx_path.parent}: no usable tokenizer beside the ONNX model: "
                          f"{_one_line(f'{type(error).__name__}: {error}')}") from None
    load_s = time.perf_counter() - start
    runs = []
    for ids in prompt_ids:
        try:
            run = decoder.greedy(ids, max_tokens)
        except Exception as error:
            raise CheckFailed(f"{onnx_path}: onnxruntime fails to run it: "
                              f"{_one_line(f'{type(error).__name__}: {error}')}") from None
        runs.append({"token_ids": run["token_ids"], "first_logits": torch.from_numpy(run["first_logits"])})
    return {"runs": runs, "texts": [tokenizer.decode(r["token_ids"]) for r in runs],
            "text_prompt_token_ids": [tokenizer(p).input_ids for p in prompts], "dtype": decoder.cache_dtype,
            "load_s": load_s, "versions": {"onnxruntime": onnxruntime.__version__}}


RUNNERS = {"transformers": run_transformers, "vllm": run_vllm_check, "onnxruntime": run_onnxruntime}


def check_output(output_dir: Path, runtime: str, max_tokens: int = 32, prompts=None,
                 min_agreement: float = DEFAULT_MIN_AGREEMENT, progress=_quiet, eager: bool = False,
                 onnx: Path | None = None, device: str = "auto", engine: dict | None = None) -> dict:
    """Load OUTPUT_DIR/model in `runtime`, compare its greedy output with the reference; see the module doc.

    `onnx` (onnxruntime only): the ONNX file or folder to check instead of OUTPUT_DIR/onnx/model.onnx.
    `device`: where the torch reference runs (auto, cpu, cuda, cuda:N). `engine` (vllm only): tensor_parallel_size
    and gpu_memory_utilization for a GPU build.

    Raises CheckFailed (one line) when the runtime cannot load or run the folder; otherwise returns the
    comparison with "passed" and, when it did not pass, "reasons".
    """
    if runtime not in RUNTIMES:
        raise UserError(f"unknown runtime {runtime!r} (known: {', '.join(RUNTIMES)})")
    if max_tokens < 1:
        raise UserError("max_tokens must be at least 1")
    if engine and runtime != "vllm":
        raise UserError(f"{', '.join(engine)} apply to the vllm runtime only")
    torch_device = pick_device(device)
    started = time.perf_counter()
    folder = resolve(output_dir).model
    try:
        check_model_folder(folder)  # a broken folder fails here, before any runtime spends minutes on it
    except UserError as error:
        raise CheckFailed(f"fails the folder check: {error}") from None
    artifact = onnx_artifact(output_dir, onnx) if runtime == "onnxruntime" else folder  # missing: fail before work
    prompts = list(prompts or PROMPTS)
    dtype = "auto" if runtime == "transformers" and is_quantized(folder) else "float32"  # see the module doc
    precision = "its stored dtype (quantized)" if dtype == "auto" else "fp32"
    progress(f"reference: {folder} in {precision} on {torch_device}, greedy {max_tokens} tokens on "
             f"{len(prompts)} prompts")
    ref = reference(folder, prompts, max_tokens, dtype, device=torch_device)
    progress(f"loading {artifact} in {runtime}" + (" (the engine takes 1-2 min to start)" if runtime == "vllm" else ""))
    t0 = time.perf_counter()
    options = {"eager": eager, "engine": engine} if runtime == "vllm" else {}
    got = RUNNERS[runtime](artifact, prompts, ref["prompt_token_ids"], max_tokens, **options)
    runtime_s = time.perf_counter() - t0
    rows = compare(prompts, ref, got, max_tokens)

    summary = {"agreement": round(sum(r["agreement"] for r in rows) / len(rows), 4),
               "prefix_agreement": round(sum(r["prefix_agreement"] for r in rows) / len(rows), 4)}
    for key in ("logits_max_abs_diff", "logprobs_max_abs_diff"):
        values = [r[key] for r in rows if r.get(key) is not None]
        if values:
            summary[key] = max(values)
    versions = got.get("versions", {})
    version = versions.get("transformers", "?")
    who = {"vllm": f"vLLM (transformers {version})", "onnxruntime": f"onnxruntime {versions.get('onnxruntime', '?')} "
           f"(the export's tokenizer)"}.get(runtime, f"transformers {version}")
    reasons = [f"{who} tokenizes prompt {i + 1} ({r['prompt']!r}) differently: {r['runtime_prompt_token_ids']} "
               f"vs the reference's {r['prompt_token_ids']}" for i, r in enumerate(rows) if not r["prompt_ids_match"]]
    if summary["prefix_agreement"] < min_agreement:
        reasons.append(f"mean prefix agreement {summary['prefix_agreement']:.2f} < {min_agreement:.2f} "
                       f"(greedy tokens match the reference's for too short)")
    return {
        "output": str(output_dir),
        "model": str(folder),
        **({"artifact": str(artifact)} if artifact != folder else {}),
        "runtime": runtime,
        "passed": not reasons,
        "reasons": reasons,
        "min_agreement": min_agreement,
        "max_tokens": max_tokens,
        "summary": summary,
        "prompts": rows,
        "reference": {"dtype": ref["dtype"], "device": ref["device"], "versions": ref["versions"]},
        **({"kv_cache": kv_cache_verdict(folder, got.get("engine"))} if runtime == "vllm" else {}),
        "runtime_info": {"dtype": got.get("dtype"), "versions": got.get("versions", {}),
                         **({"enforce_eager": eager, "build": got.get("build"), **(engine or {})}
                            if runtime == "vllm" else {}),
                         "load_s": round(got["load_s"], 2) if got.get("load_s") is not None else None},
        "versions": got.get("versions", {}),
        "seconds": {"reference": ref["seconds"], "runtime": round(runtime_s, 2),
                    "total": round(time.perf_counter() - started, 2)},
    }


def failure_line(result: dict) -> str:
    """One line for a failed check (CheckFailed message)."""
    return f"{result.get('artifact', result['model'])}: fails the {result['runtime']} check: " + "; ".join(result["reasons"])


def require_pass(result: dict) -> dict:
    if not result["passed"]:
        raise CheckFailed(failure_line(result))
    return result
