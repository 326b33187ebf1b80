import pytest

from compressor.models.tiny import save_tiny


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    return save_tiny("llama", tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_exaone4_dir(tmp_path_factory):
    return save_tiny("exaone4", tmp_path_factory.mktemp("tiny-exaone4"), hybrid=True)


@pytest.fixture(params=["llama", "exaone4"])
def tiny_dir(request, tiny_llama_dir, tiny_exaone4_dir):
    return {"llama": tiny_llama_dir, "exaone4": tiny_exaone4_dir}[request.param]
