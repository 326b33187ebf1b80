"""The package's structure: import-linter's layers and no-cycles contracts, and a wheel that runs on its own."""

import ast
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from repo import REPO_ROOT

LINT = ("from importlinter.cli import lint_imports; "
        "raise SystemExit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))")


def _lint(root: Path, package_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(package_path)}
    return subprocess.run([sys.executable, "-c", LINT], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300)


def test_import_contracts_hold():
    done = _lint(REPO_ROOT, REPO_ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "2 kept, 0 broken" in done.stdout


def test_an_upward_import_or_a_cycle_breaks_a_contract(tmp_path):
    """The contracts can fail: a copy of the package with core importing the CLI breaks both."""
    shutil.copytree(REPO_ROOT / "compressor", tmp_path / "compressor", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    errors = tmp_path / "compressor" / "core" / "errors.py"
    errors.write_text(errors.read_text() + "\nimport compressor.cli.app  # noqa\n")
    done = _lint(tmp_path, tmp_path)
    assert done.returncode != 0
    assert "compressor.core.errors -> compressor.cli.app" in done.stdout
    assert "0 kept, 2 broken" in done.stdout


def _layer_modules() -> set[str]:
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["type"] == "layers")["layers"]
    return {name.strip() for layer in layers for name in layer.replace("|", ":").split(":")}


def test_every_module_of_the_package_sits_in_a_layer():
    """A new top-level module or package cannot escape the layers contract unnoticed."""
    package = REPO_ROOT / "compressor"
    children = {f"compressor.{p.stem}" for p in package.glob("*.py") if p.stem != "__init__"}
    children |= {f"compressor.{p.name}" for p in package.iterdir() if (p / "__init__.py").is_file()}
    data_only = {"compressor.assets"}
    assert children - data_only == _layer_modules()


def test_core_imports_nothing_of_the_package_above_it():
    for path in (REPO_ROOT / "compressor" / "core").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("compressor"):
                assert node.module.startswith("compressor.core"), f"{path.name} imports {node.module}"


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory):
    """The package built as a wheel from a copy of the checkout and installed (no -e) into a fresh target."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    ignore = shutil.ignore_patterns(".git", ".venv*", "out", "build", "dist", "*.egg-info", "__pycache__",
                                    ".pytest_cache", "mlruns")
    shutil.copytree(REPO_ROOT, source, symlinks=True, ignore=ignore)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(work / "dist"), str(source)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (work / "dist").glob("compressor-*.whl")
    target = work / "site"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                                str(wheel)], capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return target


def _run_installed(target: Path, cwd: Path, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1"}
    code = "import sys; from compressor.cli.app import main; sys.argv[0] = 'compressor'; main()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)


def test_the_wheel_runs_from_any_folder_without_the_checkout(installed_wheel, tmp_path, tiny_llama_dir):
    env = {**os.environ, "PYTHONPATH": str(installed_wheel)}
    where = subprocess.run([sys.executable, "-c", "import compressor, compressor.core.resources as r; "
                            "print(compressor.__file__); print(r.recipes_dir()); print(r.eval_dir())"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr
    assert all(line.startswith(str(installed_wheel)) for line in where.stdout.splitlines()), where.stdout
    assert not (installed_wheel / "compressor" / "assets" / "recipes").is_symlink()

    listed = _run_installed(installed_wheel, tmp_path, "recipes", "list")
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines()]
    # every gallery recipe ships in the wheel, and nothing else (targets and suites are not recipes)
    assert sorted(names) == sorted(path.stem for path in (REPO_ROOT / "recipes").glob("*.yaml"))

    valid = _run_installed(installed_wheel, tmp_path, "recipes", "validate", "fp16")
    assert valid.returncode == 0 and "fp16: ok" in valid.stdout, valid.stderr

    applied = _run_installed(installed_wheel, tmp_path, "apply", "fp16", "--no-eval", "--model", str(tiny_llama_dir),
                             "--out", "fp16-out")
    assert applied.returncode == 0, applied.stderr[-3000:]
    out = tmp_path / "fp16-out"
    assert (out / "model" / "config.json").is_file() and (out / "model" / "model.safetensors").is_file()
    assert (out / "report.json").is_file() and (out / "recipe.yaml").is_file()
