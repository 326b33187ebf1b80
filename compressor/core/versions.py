"""Versions of the packages that shaped an artifact (recorded in compressor.json and reports)."""

from importlib import metadata

PACKAGES = ("compressor", "torch", "transformers", "tokenizers", "safetensors", "lm_eval",
            "accelerate", "llmcompressor", "compressed-tensors", "bitsandbytes", "vllm", "onnxruntime",
            "onnxruntime-gpu", "onnx", "optimum", "optimum-onnx")


def package_versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found
