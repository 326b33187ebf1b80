import pytest

from compressor.core.errors import UserError
from repo import REPO_ROOT
from compressor.recipe import check_against_config, load_recipe, parse_recipe
from compressor.models.tiny import tiny_llama_config


def error_of(data) -> str:
    with pytest.raises(UserError) as caught:
        parse_recipe(data, "r.yaml")
    return str(caught.value)


def test_every_shipped_recipe_validates():
    paths = sorted((REPO_ROOT / "recipes").glob("*.yaml"))
    assert {"fp16.yaml", "bf16.yaml", "drop-layers.yaml"} <= {p.name for p in paths}
    for path in paths:
        recipe = load_recipe(path)
        assert recipe.name


def test_defaults_to_the_bundled_model():
    recipe = parse_recipe({"name": "x"})
    assert recipe.model.id == "builtin:smollm2-135m"
    assert not recipe.model.trust_remote_code
    assert str(recipe.output_dir()) == "out/x"


@pytest.mark.parametrize("data, expected", [
    ({"name": "x", "stages": [{"stage": "squash"}]}, "r.yaml: stages[0]: unknown stage 'squash'"),
    ({"name": "x", "stages": [{"dtype": "fp16"}]}, "r.yaml: stages[0]: missing `stage:`"),
    ({"name": "x", "stages": [{"stage": "cast", "dtype": "int3"}]}, "r.yaml: stages[0].dtype: Input should be"),
    ({"name": "x", "stages": [{"stage": "cast", "dtype": "fp16", "extra": 1}]}, "r.yaml: stages[0].extra: unknown key"),
    ({"name": "x", "stages": [{"stage": "drop_layers", "count": -1, "from": "top"}]}, "r.yaml: stages[0].count: Input should be greater than 0"),
    ({"name": "x", "stages": [{"stage": "drop_layers", "count": 2}]}, "give exactly one of `from: top|bottom` or `by:"),
    ({"name": "x", "stages": [{"stage": "drop_layers", "count": "two", "from": "top"}]}, "stages[0].count: Input should be a valid integer"),
    ({"name": "x", "stages": [{"stage": "drop_layers", "layers": [1, 1]}]}, "`layers` has duplicates"),
    ({"name": "x", "bogus": 1}, "r.yaml: bogus: unknown key"),
    ({"name": "x", "model": {"id": "a/b", "device": "gpu"}}, "r.yaml: model.device: String should match"),
    ({"name": "x", "eval": {"latency": {"runs": 0}}}, "r.yaml: eval.latency.runs: Input should be greater than 0"),
    ({"stages": []}, "r.yaml: name: Field required"),
    (["not", "a", "mapping"], "r.yaml: expected a mapping"),
])
def test_bad_recipes_name_file_and_field(data, expected):
    message = error_of(data)
    assert expected in message
    assert "\n" not in message


def test_dropping_every_layer_is_rejected_before_loading():
    recipe = parse_recipe({"name": "x", "stages": [{"stage": "drop_layers", "count": 4, "from": "top"}]})
    with pytest.raises(UserError, match=r"r.yaml: stages\[0\] \(drop_layers\): cannot drop 4 of 4 layers"):
        check_against_config(recipe, tiny_llama_config(layers=4), "r.yaml")
    recipe = parse_recipe({"name": "x", "stages": [{"stage": "drop_layers", "layers": [7]}]})
    with pytest.raises(UserError, match="out of range"):
        check_against_config(recipe, tiny_llama_config(layers=4), "r.yaml")


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(UserError, match=r"bad.yaml: invalid YAML \(line"):
        load_recipe(bad)
    with pytest.raises(UserError, match="no such recipe file"):
        load_recipe(tmp_path / "missing.yaml")
