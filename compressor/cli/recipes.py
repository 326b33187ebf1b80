"""`compressor recipes list | validate | schema`."""

import json
from pathlib import Path

import click


@click.group()
def recipes():
    """List, validate and describe recipes."""


@recipes.command(name="list")
@click.option("--dir", "folder", type=click.Path(path_type=Path), default=None,
              help="Recipe folder (default: the packaged gallery).")
def list_recipes(folder):
    """List the recipes of the gallery (or --dir): the name `compressor apply NAME` takes, stages, description."""
    from compressor.core.resources import recipes_dir
    from compressor.recipe import load_recipe

    gallery = folder is None
    folder = folder or recipes_dir()
    for path in sorted(Path(folder).glob("*.yaml")):
        recipe = load_recipe(path)
        stages = ", ".join(s.stage for s in recipe.stages) or "(no stages)"
        name = path.stem if gallery else str(path)
        click.echo(f"{name:24} {stages:32} {recipe.description}")


@recipes.command()
@click.argument("recipe_files", nargs=-1, required=True, type=click.Path(path_type=Path))
def validate(recipe_files):
    """Check recipes without loading any model. Example: compressor recipes validate recipes/*.yaml"""
    from compressor.recipe import load_recipe

    for path in recipe_files:
        load_recipe(path)
        click.echo(f"{path}: ok")


@recipes.command()
def schema():
    """Print the recipe JSON schema (for editors and validators)."""
    from compressor.recipe import recipe_model

    click.echo(json.dumps(recipe_model().model_json_schema(by_alias=True), indent=2))
