"""optimum-onnx configs for the families it lacks (EXAONE-4.0), derived from the one their adapter names.

An ONNX config only describes the graph's inputs and outputs and how to build dummy inputs (including the
KV cache: KV heads x head_dim); the layers themselves are traced from the family's transformers modeling
code. So a family whose cache and inputs look like another's exports with that one's config, registered
under its own model type so that every optimum entry point (export, `ORTModelForCausalLM`) knows it.
"""

from compressor.models.adapters import ADAPTERS

TASKS = ("text-generation", "text-generation-with-past")
_registered: set[str] = set()


def register_family_configs() -> None:
    """Register an ONNX config for each adapter family with `onnx_config_like` (idempotent)."""
    from optimum.exporters.tasks import TasksManager

    register = TasksManager.create_register("onnx")
    for adapter in ADAPTERS.values():
        if adapter.onnx_config_like is None or adapter.model_type in _registered:
            continue
        base = TasksManager.get_exporter_config_constructor(
            exporter="onnx", model_type=adapter.onnx_config_like, task=TASKS[-1], library_name="transformers").func
        name = "".join(part.capitalize() for part in adapter.model_type.split("_")) + "OnnxConfig"
        config_class = type(name, (base,), {"__doc__": f"{adapter.model_type}: the {base.__name__} inputs, "
                                                       "outputs and KV-cache layout (registered by compressor)"})
        register(adapter.model_type, *TASKS)(config_class)
        _registered.add(adapter.model_type)
