"""Measure a recipe's source under its eval settings into the baseline cache, once, before a sweep's trials run
(they then read it from the cache instead of each measuring it, concurrently, again). The sweep runs it as
`compressor sweep-baseline RECIPE.yaml`, a process of its own with the CLI's error handling."""


def measure_baseline(recipe_file: str) -> None:
    from compressor.evaluate.judge import baseline_measurement
    from compressor.evaluate.spec import check_folders
    from compressor.models.checkpoint import check_model_folder
    from compressor.models.sources import pick_device, resolve_source
    from compressor.recipe import load_recipe
    from compressor.runtimes.vllm_runtime import require_vllm

    recipe = load_recipe(recipe_file)
    source = resolve_source(recipe.model.id, recipe.model.revision)
    check_model_folder(source.path, recipe.model.allow_pickle)
    check_folders(recipe.eval, [source.path])
    if recipe.eval.runtime == "vllm":
        require_vllm()
    _, key, cached = baseline_measurement(source.path, recipe.eval, pick_device(recipe.model.device),
                                          lambda message: print(message, flush=True))
    print(f"baseline {key} {'from the cache' if cached else 'measured'}", flush=True)

