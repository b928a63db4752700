"""The torch/torchvision pairing check, on faked installed versions (no install changes)."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import warnings

import pytest

import gradprune_lite as gp
from gradprune_lite import _install_check
from gradprune_lite.experiment import data

CPU_FIX = "pip install --force-reinstall torch torchvision --index-url https://download.pytorch.org/whl/cpu"


@pytest.fixture
def installed(monkeypatch):
    """``installed(torch=..., torchvision=..., linux=True)`` fakes what the metadata says."""

    def fake(torch: str | None, torchvision: str | None, *, linux: bool = True) -> None:
        versions = {"torch": torch, "torchvision": torchvision}

        def version(name: str) -> str:
            if versions.get(name) is None:
                raise importlib.metadata.PackageNotFoundError(name)
            return versions[name]

        monkeypatch.setattr(_install_check, "version", version)
        monkeypatch.setattr(_install_check, "pypi_wheels_are_cuda_builds", lambda: linux)

    return fake


@pytest.mark.parametrize(
    ("torch", "torchvision"),
    [
        ("2.14.1", "0.29.1"),  # PyPI
        ("2.13.0+cpu", "0.28.0+cpu"),  # PyTorch's CPU index, the README's route
        ("2.6.0+cu124", "0.21.0+cu124"),
        ("2.1.0", "0.16.0"),  # the oldest pair pyproject.toml allows
        ("2.5.1", "0.20.1"),  # conda-forge: no local tags
        ("2.14.0a0+git1a2b3c4", "0.29.0a0+gitdeadbee"),  # source builds: tags name commits
    ],
)
def test_matching_pairs_pass(installed, torch, torchvision):
    installed(torch, torchvision)
    assert _install_check.torch_torchvision_problem() is None


def test_a_minor_version_apart_is_named_with_both_versions_and_the_fix(installed):
    installed("2.13.0+cpu", "0.29.1+cpu")
    problem = _install_check.torch_torchvision_problem()
    assert problem == (
        "torch 2.13.0+cpu and torchvision 0.29.1+cpu are builds that do not belong together "
        f"(torchvision 0.29 goes with torch 2.14); install a matching pair with: {CPU_FIX}"
    )
    assert "\n" not in problem


def test_different_build_tags_are_a_mismatch(installed):
    installed("2.13.0+cpu", "0.28.0+cu124")
    problem = _install_check.torch_torchvision_problem()
    assert "torch is the cpu build, torchvision the cu124 build" in problem
    assert problem.endswith(CPU_FIX)
    installed("2.6.0+cu124", "0.21.0+cpu")
    problem = _install_check.torch_torchvision_problem()
    assert "torch is the cu124 build, torchvision the cpu build" in problem
    assert problem.endswith("--index-url https://download.pytorch.org/whl/cu124")


def test_the_issues_install_is_named_on_linux_only(installed):
    # torch from the CPU index, then torchvision from PyPI: "torchvision::nms does not exist".
    installed("2.13.0+cpu", "0.28.0", linux=True)
    problem = _install_check.torch_torchvision_problem()
    assert "torch 2.13.0+cpu and torchvision 0.28.0" in problem
    assert "torchvision PyPI's CUDA build" in problem and problem.endswith(CPU_FIX)
    installed("2.14.1", "0.29.1+cpu", linux=True)
    assert "torch PyPI's CUDA build" in _install_check.torch_torchvision_problem()
    # On macOS and Windows PyPI's wheels are CPU builds too: nothing to say.
    installed("2.13.0+cpu", "0.28.0", linux=False)
    assert _install_check.torch_torchvision_problem() is None


def test_missing_torchvision_is_named_with_the_install_command(installed):
    installed("2.13.0+cpu", None)
    assert _install_check.torch_torchvision_problem() == (
        f"torchvision is not installed beside torch 2.13.0+cpu; install it with: {CPU_FIX}"
    )
    installed("2.14.1", None)
    assert _install_check.torch_torchvision_problem().endswith(
        "install it with: pip install --force-reinstall torch torchvision"
    )


def test_pairs_outside_the_release_rule_are_not_judged(installed):
    installed("1.13.1", "0.14.1")  # before torch 2.0's rule
    assert _install_check.torch_torchvision_problem() is None
    installed("nightly", "0.29.1")
    assert _install_check.torch_torchvision_problem() is None


def test_this_environment_is_a_matching_pair():
    # The real metadata, as the test command sees it: a mixed install fails here by name.
    assert _install_check.torch_torchvision_problem() is None


def test_the_check_does_not_import_torchvision():
    code = (
        "import sys; from gradprune_lite import _install_check; "
        "_install_check.torch_torchvision_problem(); print('torchvision' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_the_data_loader_blames_the_mismatched_install_not_mnist(installed, monkeypatch, tmp_path):
    installed("2.13.0+cpu", "0.28.0")
    # A torchvision built for another torch fails on import; None in sys.modules does too,
    # and guarantees that nothing is downloaded.
    for name in ("torchvision", "torchvision.datasets"):  # the second: if imported already
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delenv("GRADPRUNE_DATA", raising=False)
    monkeypatch.delenv("GRADPRUNE_OFFLINE", raising=False)
    monkeypatch.setenv("GRADPRUNE_CACHE", str(tmp_path))
    monkeypatch.setattr(data, "_WARNED", {})  # each data warning shows once per session
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        digits = gp.mnist("test", verbose=False)
    assert digits.is_subset
    first, *rest = [str(w.message) for w in caught]
    assert first.startswith("torch 2.13.0+cpu and torchvision 0.28.0 are builds that do not")
    assert first.endswith(CPU_FIX)
    assert len(rest) == 1 and "its build does not match torch's" in rest[0]
