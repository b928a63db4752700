"""Binder's files, checked without Docker: the environments, the CPU-thread start script,
and postBuild run for real in a fresh virtual environment pointed at local MNIST."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"
ENVIRONMENT_FILES = [ROOT / "environment.yml", BINDER / "environment.yml"]
# The design card's packages, by their conda-forge names (PyTorch is "pytorch" there).
DESIGN_PACKAGES = {
    "jupyterlab",
    "ipywidgets",
    "pytorch",
    "torchvision",
    "matplotlib",
    "nbval",
    "jupytext",
}


#: Installed by the environment files' pip section, from PyPI: not packaged on conda-forge.
PIP_ONLY = {"torch-pruning"}
#: In the developers' environment only: Binder is where students land, and nbgrader's menus
#: would appear in every notebook there.
INSTRUCTORS_ONLY = {"nbgrader"}


def conda_name(spec: str) -> str:
    """'pytorch=*=cpu*' → 'pytorch'; 'setuptools>=64' → 'setuptools'."""
    for separator in "=<>!~ ":
        spec = spec.split(separator, 1)[0]
    return spec.strip().lower()


def split_dependencies(path: Path) -> tuple[dict[str, str], list[str]]:
    """An environment file's conda specs (name → spec) and its pip lines."""
    environment = yaml.safe_load(path.read_text())
    conda, pip = {}, []
    for item in environment["dependencies"]:
        if isinstance(item, dict):
            pip.extend(item["pip"])
        else:
            conda[conda_name(item)] = str(item)
    return conda, pip


def load_cpu_threads():
    """binder/cpu_threads.py as a module (binder/ is not a package)."""
    spec = importlib.util.spec_from_file_location("cpu_threads", BINDER / "cpu_threads.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def extra_requirements(project: dict, extra: str) -> list[str]:
    """``extra``'s requirements, with the extras it names of this package (``[course]``) expanded."""
    requirements = []
    for spec in project["optional-dependencies"][extra]:
        own = re.fullmatch(r"gradprune-lite\[([\w,]+)\]", spec.replace(" ", ""))
        if own is None:
            requirements.append(spec)
        else:
            for name in own.group(1).split(","):
                requirements += extra_requirements(project, name)
    return requirements


@pytest.mark.parametrize("path", ENVIRONMENT_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_environment_file_lists_the_design_packages_from_conda_forge(path):
    environment = yaml.safe_load(path.read_text())
    conda, _ = split_dependencies(path)
    assert environment["channels"][0] == "conda-forge"
    assert set(environment["channels"]) <= {"conda-forge", "nodefaults"}
    assert DESIGN_PACKAGES <= set(conda), f"missing: {DESIGN_PACKAGES - set(conda)}"
    assert conda["python"] == "python=3.11"
    # CPU builds of conda-forge's PyTorch, never the CUDA ones (Binder has no GPU).
    assert conda["pytorch"].endswith("=cpu*") and conda["torchvision"].endswith("=cpu*")


def test_environment_covers_the_package_and_its_dev_extra():
    # A conda user runs the README's test command in this environment, so everything
    # pyproject.toml asks for must be there: its pip line installs the package without
    # resolving dependencies again. Playwright is left out: the browser test skips without it.
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11+")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + extra_requirements(project, "dev")
    pip_to_conda = {"torch": "pytorch"}
    names = {pip_to_conda.get(conda_name(spec), conda_name(spec)) for spec in wanted}
    conda, pip = split_dependencies(ENVIRONMENT_FILES[0])
    available = set(conda) | {conda_name(line) for line in pip if not line.startswith("-e ")}
    assert names - {"playwright"} <= available, f"missing: {names - {'playwright'} - available}"


def test_root_and_binder_environments_hold_the_same_packages_but_nbgrader():
    root_conda, root_pip = split_dependencies(ENVIRONMENT_FILES[0])
    binder_conda, binder_pip = split_dependencies(ENVIRONMENT_FILES[1])
    assert INSTRUCTORS_ONLY <= set(root_conda) and not INSTRUCTORS_ONLY & set(binder_conda)
    assert {k: v for k, v in root_conda.items() if k not in INSTRUCTORS_ONLY} == binder_conda
    assert [p for p in root_pip if not p.startswith("-e ")] == [
        p for p in binder_pip if not p.startswith("-e ")
    ]


@pytest.mark.parametrize("path", ENVIRONMENT_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_pip_section_installs_this_repository_from_the_file_location(path):
    # conda runs pip from the environment file's folder, so each path is relative to it.
    _, pip = split_dependencies(path)
    editable = [line for line in pip if line.startswith("-e ")]
    assert len(editable) == 1
    assert (path.parent / editable[0][3:].strip()).resolve() == ROOT
    # Anything else pip installs is a package we take from PyPI because conda-forge lacks it.
    assert {conda_name(line) for line in pip if line not in editable} <= PIP_ONLY


@pytest.mark.parametrize("name", ["postBuild", "start"])
def test_binder_scripts_are_executable_bash(name):
    # repo2docker runs them directly; a lost executable bit breaks the build or the launch.
    script = BINDER / name
    assert os.access(script, os.X_OK)
    assert script.read_text().startswith("#!/bin/bash\n")
    subprocess.run(["bash", "-n", str(script)], check=True)  # syntax


def test_cpu_threads_follows_the_tightest_limit(tmp_path, monkeypatch):
    cpu_threads = load_cpu_threads()
    monkeypatch.setattr(cpu_threads, "_visible_cpus", lambda: 64)  # a big host, as on Binder
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("250000 100000\n")  # 2.5 CPUs
    assert cpu_threads.cpu_threads(v2, environ={}) == 2
    assert cpu_threads.cpu_threads(v2, environ={"CPU_LIMIT": "1.0"}) == 1

    (v2 / "cpu.max").write_text("max 100000\n")  # no quota: the host's CPUs count
    assert cpu_threads.cpu_threads(v2, environ={}) == 64

    v1 = tmp_path / "v1" / "cpu,cpuacct"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("50000\n")  # half a CPU still gets one thread
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_threads.cpu_threads(v1.parent, environ={}) == 1


def test_cpu_threads_ignores_unreadable_limits(tmp_path, monkeypatch):
    cpu_threads = load_cpu_threads()
    monkeypatch.setattr(cpu_threads, "_visible_cpus", lambda: 3)
    (tmp_path / "cpu.max").write_text("garbage\n")
    assert cpu_threads.cpu_threads(tmp_path, environ={"CPU_LIMIT": "not a number"}) == 3


def test_start_gives_torch_the_threads_the_container_has_and_runs_the_command():
    expected = load_cpu_threads().cpu_threads()
    probe = "import os, torch; print(os.environ['OMP_NUM_THREADS'], torch.get_num_threads())"
    environment = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    environment.pop("OMP_NUM_THREADS", None)
    result = subprocess.run(
        ["bash", str(BINDER / "start"), sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=True,
    )
    assert result.stdout.split() == [str(expected), str(expected)]


def fresh_venv_sharing_our_packages(folder: Path) -> Path:
    """A new virtual environment that sees this interpreter's packages through a .pth file.

    Torch and Jupyter come from the running environment (as conda provides them on Binder),
    so postBuild's own work, not a reinstall of torch, is what gets tested. Returns its bin/.
    """
    venv.EnvBuilder(with_pip=False, symlinks=True).create(folder)
    purelib = sysconfig.get_paths(vars={"base": str(folder), "platbase": str(folder)})["purelib"]
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(purelib, "_shared_with_tests.pth").write_text("\n".join(sorted(ours)) + "\n")
    return folder / "bin"


@pytest.mark.skipif(
    not (Path(os.environ.get("GRADPRUNE_DATA", "/nonexistent")) / "MNIST" / "raw").is_dir(),
    reason="needs GRADPRUNE_DATA pointing at a local full MNIST (postBuild must not download here)",
)
def test_postbuild_installs_the_package_and_caches_full_mnist(tmp_path):
    bin_dir = fresh_venv_sharing_our_packages(tmp_path / "venv")
    cache = tmp_path / "cache"
    environment = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "VIRTUAL_ENV": str(bin_dir.parent),
        "GRADPRUNE_CACHE": str(cache),
        "GRADPRUNE_OFFLINE": "1",  # a download attempt would fail the build, not hide here
        "PIP_NO_INDEX": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    result = subprocess.run(
        ["bash", str(BINDER / "postBuild")],
        capture_output=True,
        text=True,
        env=environment,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr

    # The package is installed into the new environment itself, editable from this checkout.
    where = subprocess.run(
        [str(bin_dir / "python"), "-c", "import gradprune_lite; print(gradprune_lite.__file__)"],
        capture_output=True,
        text=True,
        env={**environment, "PYTHONPATH": ""},
        cwd=tmp_path,
        check=True,
    )
    assert Path(where.stdout.strip()).resolve() == ROOT / "gradprune_lite" / "__init__.py"
    installed = sysconfig.get_paths(vars={"base": str(bin_dir.parent)})["purelib"]
    assert any(
        p.name.startswith("__editable__") and "gradprune_lite" in p.name
        for p in Path(installed).iterdir()
    )

    # Full MNIST sits in the cache, byte for byte, and our loader finds it there offline.
    source = Path(os.environ["GRADPRUNE_DATA"]) / "MNIST" / "raw"
    for name in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        assert (cache / "MNIST" / "raw" / name).read_bytes() == (source / name).read_bytes()
    assert "60,000 digits" in result.stdout and "10,000 digits" in result.stdout

    # JupyterLab's settings open .py notebooks as notebooks.
    overrides = (
        Path(installed).parents[2] / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    )
    assert "Jupytext Notebook" in overrides.read_text()
