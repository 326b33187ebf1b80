import pytest

from compressor.models.tiny import save_tiny


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` skip with the reason where CUDA is not available."""
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu:
        return
    import torch

    if not torch.cuda.is_available():
        for item in gpu:
            item.add_marker(pytest.mark.skip(reason="needs CUDA"))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    return save_tiny("llama", tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_exaone4_dir(tmp_path_factory):
    return save_tiny("exaone4", tmp_path_factory.mktemp("tiny-exaone4"), hybrid=True)


@pytest.fixture(params=["llama", "exaone4"])
def tiny_dir(request, tiny_llama_dir, tiny_exaone4_dir):
    return {"llama": tiny_llama_dir, "exaone4": tiny_exaone4_dir}[request.param]


@pytest.fixture(autouse=True, scope="session")
def private_baseline_cache(tmp_path_factory):
    """Tests never read or write the user's baseline cache."""
    import os

    folder = tmp_path_factory.mktemp("baselines")
    saved = os.environ.get("COMPRESSOR_BASELINES")
    os.environ["COMPRESSOR_BASELINES"] = str(folder)
    yield folder
    if saved is None:
        os.environ.pop("COMPRESSOR_BASELINES", None)
    else:
        os.environ["COMPRESSOR_BASELINES"] = saved
