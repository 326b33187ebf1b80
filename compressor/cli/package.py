"""`compressor package DIR --target T`: check DIR/model against a deployment target and write DIR/submit.zip."""

from pathlib import Path

import click

from compressor.cli.output import emit, progress_printer


@click.command()
@click.argument("output_dir", type=click.Path(path_type=Path))
@click.option("--target", "target_file", type=click.Path(path_type=Path), required=True,
              help="A packaged target by name (lg-aimers, hf) or a target YAML file.")
@click.option("--force", is_flag=True, help="Overwrite an existing submit.zip.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def package(output_dir, target_file, force, as_json):
    """Check OUTPUT_DIR/model against a deployment target and write OUTPUT_DIR/submit.zip.

    \b
    Example:
      compressor package out/fp16 --target lg-aimers
    """
    from compressor.export.package import package as make_package
    from compressor.export.targets import load_target

    result = make_package(output_dir, load_target(target_file), force=force, progress=progress_printer(not as_json))
    emit(result, as_json, lambda r: click.echo(
        f"wrote {r['zip']} ({r['zipped_bytes'] / 2**20:.1f} MB, {len(r['files'])} files) for target {r['target']}"))
