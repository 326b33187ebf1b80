"""`compressor plan RECIPE`: the memory and disk each step of `apply` will need, from the config alone."""

from pathlib import Path

import click

from compressor.cli.output import emit, stderr_console

GB = 1e9


@click.command("plan")
@click.argument("recipe_file", type=click.Path(path_type=Path))
@click.option("--model", "model_id", help="Plan for this model instead of the recipe's (builtin:NAME, folder, hub id).")
@click.option("--device", default=None, help="Plan for this device (cpu, cuda, cuda:N) instead of the recipe's.")
@click.option("--memory", default=None, metavar="SIZE",
              help="Memory the run may use on the device (e.g. 24GB); default: what this machine has.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Output folder whose disk is checked (default: the recipe's).")
@click.option("--no-eval", is_flag=True, help="Plan without the recipe's evaluation.")
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE", help="Override a recipe field (as apply).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON on stdout.")
def plan(recipe_file, model_id, device, memory, out_dir, no_eval, overrides, as_json):
    """Plan RECIPE_FILE before running it: the peak memory of loading, each stage, writing and evaluating,
    vLLM's KV-cache room on a GPU, and the disk the output needs. Reads the model's config only.

    \b
    Example:
      compressor plan recipes/w8a8.yaml
      compressor plan recipes/minitron.yaml --model ./EXAONE-4.0-32B --device cuda --memory 80GB
    """
    import torch

    from compressor.core.sizes import parse_size
    from compressor.models.sources import config_only
    from compressor.plan.planner import advice, plan_recipe, refusal
    from compressor.recipe import check_against_config, load_recipe

    recipe = load_recipe(recipe_file, list(overrides))
    if model_id is not None:
        recipe.model.id = model_id
    if device is not None:
        recipe.model.device = device
    config, folder = config_only(recipe.model.id, recipe.model.revision, recipe.model.trust_remote_code)
    check_against_config(recipe, config, str(recipe_file))
    target = torch.device(recipe.model.device if recipe.model.device != "auto" else
                          ("cuda" if torch.cuda.is_available() else "cpu"))
    budget = parse_size(memory, "--memory") if memory is not None else None
    result = plan_recipe(recipe, config, target, folder, out_dir or recipe.output_dir(), budget,
                         evaluate=False if no_eval else None)
    data = result.to_dict()
    data["refusal"] = refusal(recipe, result, str(recipe_file))
    data["advice"] = advice(recipe, result) if data["refusal"] else []

    def render(d):
        from rich.table import Table

        console = stderr_console()
        table = Table(title=f"{recipe.name} on {d['device']}: {d['params'] / 1e9:.3g} B params in {d['dtype']}")
        table.add_column("step")
        table.add_column("peak GB", justify="right")
        table.add_column("largest parts")
        for step in d["steps"]:
            parts = sorted(step["parts"].items(), key=lambda kv: -kv[1])[:4]
            table.add_row(step["name"], f"{step['peak'] / GB:.2f}",
                          ", ".join(f"{name} {size / GB:.2f}" for name, size in parts))
        console.print(table)
        budget_text = f"{d['budget'] / GB:.1f} GB available" if d["budget"] else "memory unknown"
        console.print(f"peak {d['peak'] / GB:.2f} GB at {d['peak_step']} ({budget_text}); "
                      f"output {d['output_bytes'] / GB:.2f} GB on disk"
                      + (f", offloaded weights {d['offload_bytes'] / GB:.2f} GB" if d["offload_bytes"] else ""))
        if d["vllm"]:
            v = d["vllm"]
            room = f"{v['kv_tokens']:,} tokens of KV cache" if "kv_tokens" in v else "KV room unknown"
            console.print(f"vLLM: {v['weights_per_gpu'] / GB:.2f} GB weights per GPU (tp {v['tensor_parallel_size']}), "
                          f"{room} at gpu_memory_utilization {v['gpu_memory_utilization']} "
                          f"(max_model_len {v['max_model_len']:,})")
        for note in d["notes"]:
            console.print(f"note: {note}")
        console.print(f"[red]does not fit:[/red] {d['refusal']}" if d["refusal"] else "[green]fits[/green]")

    emit(data, as_json, render)
