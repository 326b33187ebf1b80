"""Int8 copies of an exported decoder, made with onnxruntime's own quantizers (no calibration data).

Both quantize weights to int8 ahead of time and activations to int8 dynamically, at run time:
- `matmul-nbits` (default; MatMulNBitsQuantizer, bits=8): weights symmetric, one scale per block of 32 input
  channels; accuracy_level 4 makes the kernel quantize activations to int8 per block of 32 as it runs.
- `dynamic` (onnxruntime.quantization.quantize_dynamic): every MatMul with a constant weight becomes
  MatMulInteger: weights symmetric, one scale per output channel; activations uint8 with one scale per
  tensor (DynamicQuantizeLinear). One scale for a whole activation tensor is ruined by the outlier channels
  of LLM hidden states (Dettmers et al. 2022, LLM.int8(), arXiv 2208.07339): on SmolLM2 its logits are off by
  ~20 and greedy agreement drops to ~0.3, vs ~2.6 and ~0.85 for matmul-nbits at the same size and speed.

Embeddings (Gather) and the LM head (the MatMul that makes `logits`) stay float, like the project's other
8-bit schemes: both are known to hurt when quantized and the LM head is tied to the embeddings.
"""

from __future__ import annotations

from pathlib import Path

from compressor.export.library_noise import quiet_libraries

METHODS = ("matmul-nbits", "dynamic")
BLOCK_SIZE = 32
ACCURACY_LEVEL = 4  # MatMulNBits: int8 activations and int8 dot products


def _uses_external_data(model) -> bool:
    import onnx

    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)


def lm_head_nodes(model) -> list[str]:
    """Names of the MatMul nodes that compute `logits` (directly, or through one Cast/Reshape on the way)."""
    producers = {out: node for node in model.graph.node for out in node.output}
    found, frontier = [], ["logits"]
    for _ in range(3):
        nodes = [producers[name] for name in frontier if name in producers]
        found += [n.name for n in nodes if n.op_type in ("MatMul", "Gemm")]
        frontier = [i for n in nodes if n.op_type not in ("MatMul", "Gemm") for i in n.input]
    return found


def quantize_int8(source: Path, target: Path, method: str = "matmul-nbits") -> dict:
    """Write an int8 copy of `source` (.onnx) to `target`; returns the settings used."""
    import onnx
    import onnxruntime.quantization.matmul_nbits_quantizer  # noqa: F401  (sets up logging on import: before quieting)


    if method not in METHODS:
        raise ValueError(f"unknown int8 method {method!r} (known: {', '.join(METHODS)})")
    graph_only = onnx.load(str(source), load_external_data=False)
    external = _uses_external_data(graph_only)
    exclude = lm_head_nodes(graph_only)
    del graph_only
    quantize = _dynamic if method == "dynamic" else _matmul_nbits
    with quiet_libraries():
        settings = quantize(Path(source), Path(target), exclude, external)
    return {"method": method, **settings, "kept_float": ["embeddings (Gather)", *exclude],
            "external_data": external}


def _dynamic(source: Path, target: Path, exclude: list[str], external: bool) -> dict:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=["MatMul"], nodes_to_exclude=exclude, use_external_data_format=external)
    return {"weights": "int8 symmetric, per output channel", "activations": "uint8 per tensor at run time",
            "ops": ["MatMul"]}


def _matmul_nbits(source: Path, target: Path, exclude: list[str], external: bool) -> dict:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(onnx.load(str(source)), bits=8, block_size=BLOCK_SIZE, is_symmetric=True,
                                     accuracy_level=ACCURACY_LEVEL, nodes_to_exclude=exclude,
                                     op_types_to_quantize=("MatMul",))
    quantizer.process()
    quantizer.model.save_model_to_file(str(target), use_external_data_format=external)
    return {"weights": f"int8 symmetric, blocks of {BLOCK_SIZE} input channels",
            "activations": f"int8 per block at run time (accuracy_level {ACCURACY_LEVEL})", "ops": ["MatMul"]}
