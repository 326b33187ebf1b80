"""Models placed by accelerate (`model.device_map`): some modules' weights live on the CPU or on disk and are
onloaded, one module at a time, while that module runs (accelerate's hooks; llm-compressor turns them into
compressed-tensors' own offloading). What the stages need to work on such a model without onloading it whole.
"""

import contextlib
import functools
import os
import sys

import torch

FLOATS = (torch.float32, torch.float16, torch.bfloat16)  # cast; int8 / int32 / fp8 tensors stay as they are


def _ct_cache(tensors):
    """`tensors` (a module's _parameters or _buffers) when compressed-tensors offloads them, else None."""
    cache = sys.modules.get("compressed_tensors.offload.cache")  # none without it imported (llm-compressor does)
    return tensors if cache is not None and isinstance(tensors, cache.OffloadCache) else None


def is_offloaded(model: torch.nn.Module) -> bool:
    """True when some module's weights are offloaded (accelerate hooks or compressed-tensors offloading)."""
    from accelerate.utils import has_offloaded_params

    return any(has_offloaded_params(m) or _ct_cache(m._parameters) is not None for m in model.modules())


def input_device(model: torch.nn.Module) -> torch.device:
    """Where the model's inputs go: its first parameter's device, or (offloaded) accelerate's main device."""
    parameter = next(model.parameters())
    if parameter.device.type != "meta":
        return parameter.device
    devices = [d for d in getattr(model, "hf_device_map", {}).values() if d not in ("cpu", "disk")]
    return torch.device(devices[0] if devices else "cpu")


@torch.no_grad()
def own_cpu_tensors(model: torch.nn.Module) -> None:
    """Copy the weights that stayed on the CPU out of the checkpoint's memory map. Loaded from safetensors they are
    views of a mapping of the whole file, which each later onload touches too: as long as one view lives, every
    page read counts in the process's memory, up to the whole checkpoint."""
    seen = set()
    for module in model.modules():
        for tensors in (module._parameters, module._buffers):
            for tensor in tensors.values():
                if tensor is not None and tensor.device.type == "cpu" and id(tensor) not in seen:
                    seen.add(id(tensor))
                    tensor.data = tensor.data.clone()


def _accelerate_weights(model: torch.nn.Module) -> list:
    """The distinct weight stores accelerate's hooks onload from (OffloadedWeightsLoader or dict)."""
    stores = {}
    for module in model.modules():
        weights_map = getattr(getattr(module, "_hf_hook", None), "weights_map", None)
        if weights_map is not None:
            store, _ = _store(weights_map)
            stores[id(store)] = store
    return list(stores.values())


def _store(weights_map):
    """(the store, the key prefix) behind a hook's weights_map (PrefixedDataset over OffloadedWeightsLoader/dict)."""
    prefix = ""
    while hasattr(weights_map, "prefix"):
        prefix += weights_map.prefix
        weights_map = weights_map.dataset
    return weights_map, prefix


@contextlib.contextmanager
def edited(module: torch.nn.Module):
    """Change a module's own weights (e.g. slice them) although accelerate offloads them: they are onloaded for
    the edit, and what the module holds after it is written back where they came from (the offload folder, or
    the CPU copy), so that later onloads bring the edited weights, in their new shapes."""
    from accelerate.utils import align_module_device, has_offloaded_params
    from safetensors.torch import save_file

    if not has_offloaded_params(module):
        yield module
        return
    store, prefix = _store(module._hf_hook.weights_map)
    with align_module_device(module):
        yield module
        for name, tensor in module.named_parameters(recurse=False):
            key, value = prefix + name, tensor.detach().cpu()
            if isinstance(store, dict):
                store[key] = value
            elif key in store.state_dict:
                store.state_dict[key] = value
            else:  # as transformers indexes offloaded checkpoint tensors (a .dat file's dtype could not change)
                path = os.path.join(store.save_folder, f"{key}.safetensors")
                save_file({key: value.contiguous()}, path)
                store.index[key] = {"safetensors_file": path, "weight_name": key,
                                    "dtype": str(value.dtype).removeprefix("torch.")}


def offload_aware(edit):
    """Decorate `edit(module, ...)`, a function that replaces a module's weights, to run it under `edited`."""
    @functools.wraps(edit)
    def run(module, *args, **kwargs):
        with edited(module):
            return edit(module, *args, **kwargs)
    return run


def _offloaded(tensors, name: str):
    """`tensors[name]` as stored (compressed-tensors: the offloaded tensor, not an onloaded copy)."""
    if _ct_cache(tensors) is None:
        return tensors[name]
    from compressed_tensors.offload import disable_onloading

    with disable_onloading():
        return tensors[name]


@torch.no_grad()
def cast_tensor(tensors, name: str, dtype: torch.dtype) -> None:
    """Cast `tensors[name]` (a module's _parameters or _buffers) to `dtype` where it lives: in place, or, when
    compressed-tensors offloads it to disk, as a new offloaded tensor (an update in place keeps the old dtype)."""
    cache = _ct_cache(tensors)
    if cache is None:
        tensors[name].data = tensors[name].data.to(dtype)
        return
    offloaded = _offloaded(cache, name)
    if offloaded.device.type == "meta":  # on disk
        value = cache[name].to(dtype)
        del cache[name]
        cache[name] = torch.nn.Parameter(value, offloaded.requires_grad) \
            if isinstance(offloaded, torch.nn.Parameter) else value
    else:  # a CPU (or device) copy: cast where it is, so tied tensors stay tied
        offloaded.data = offloaded.data.to(dtype)


@torch.no_grad()
def cast_floats_in_place(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """`model.to(dtype)` for the fp32/fp16/bf16 tensors of an offloaded model (accelerate refuses to move one).

    Accelerate's offloaded tensors are `meta` placeholders: each is replaced by one of the new dtype (tied ones by
    the same), and the store the hooks onload from is told the new dtype (accelerate would cast on onloading
    anyway; compressed-tensors, which llm-compressor converts the model to, reads the dtype from there).
    Compressed-tensors' offloaded tensors are cast by `cast_tensor`."""
    done: dict[int, torch.Tensor] = {}
    for module in model.modules():
        for tensors in (module._parameters, module._buffers):
            for name in list(tensors):
                tensor = _offloaded(tensors, name)
                if tensor is None or tensor.dtype not in FLOATS or tensor.dtype == dtype:
                    continue
                if _ct_cache(tensors) is not None:
                    cast_tensor(tensors, name, dtype)
                    continue
                if id(tensor) not in done:
                    cast = tensor.to(dtype)
                    done[id(tensor)] = torch.nn.Parameter(cast, tensor.requires_grad) \
                        if isinstance(tensor, torch.nn.Parameter) else cast
                tensors[name] = done[id(tensor)]
    name = str(dtype).removeprefix("torch.")
    for store in _accelerate_weights(model):
        for key, value in list(getattr(store, "state_dict", store).items()):
            if isinstance(value, torch.Tensor) and value.dtype in FLOATS:
                getattr(store, "state_dict", store)[key] = value.to(dtype)
        for info in getattr(store, "index", {}).values():
            if "safetensors_file" in info and getattr(torch, info.get("dtype", ""), None) in FLOATS:
                info["dtype"] = name
    return model
