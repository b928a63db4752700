"""Do the installed torch and torchvision belong together? Read from their metadata only.

A torchvision built for another torch installs without complaint and fails only on import,
with "operator torchvision::nms does not exist": pip accepts torchvision 0.28.0 from PyPI
(a CUDA build on Linux) beside torch 2.13.0+cpu from PyTorch's CPU index, since its
``torch==2.13.0`` requirement ignores the ``+cpu`` tag. This module names such a pair in
one line, with the command that installs a matching one, without importing torchvision
(the import is what fails, and it costs a second when it works).

Pairs follow PyTorch's release rule: torchvision 0.N goes with torch 2.(N-15), from
torchvision 0.15 / torch 2.0 on. Builds are told apart by their local version tag
(``+cpu``, ``+cu124``, ``+rocm6.2``, ``+xpu``); PyPI's wheels have none, and on Linux
x86_64 PyPI's are CUDA builds, so there an untagged torchvision beside a ``+cpu`` torch is
a mismatch. Elsewhere an untagged wheel may be either, and nothing is said about it.
"""

from __future__ import annotations

import platform
import re
from importlib.metadata import PackageNotFoundError, version

#: PyTorch's own wheel indexes, one per build: .../whl/cpu, .../whl/cu124, ...
WHEEL_INDEX = "https://download.pytorch.org/whl/"
#: The README's CPU route: both packages together, from one index.
CPU_INSTALL = f"pip install torch torchvision --index-url {WHEEL_INDEX}cpu"
#: torchvision 0.N pairs with torch 2.(N - 15) from this N on (0.15 with torch 2.0).
FIRST_PAIRED_MINOR = 15
_RELEASE = re.compile(r"^(\d+)\.(\d+)")
# Local tags that name a build; a source build's "+git1a2b3c" names a commit, not a build.
_BUILD_TAG = re.compile(r"^(cpu|cu\d+|rocm[\d.]+|xpu)$")


def installed_version(name: str) -> str | None:
    """The installed distribution ``name``'s version string, or None if it is absent."""
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def pypi_wheels_are_cuda_builds() -> bool:
    """True where PyPI's untagged torch and torchvision wheels are CUDA builds."""
    return platform.system() == "Linux" and platform.machine().lower() in ("x86_64", "amd64")


def _release(text: str) -> tuple[int, int] | None:
    """'2.13.0+cpu' → (2, 13); None when the version does not start with two numbers."""
    match = _RELEASE.match(text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _build(text: str) -> str | None:
    """'2.13.0+cpu' → 'cpu'; None for an untagged version or a tag that names no build."""
    _, _, tag = text.partition("+")
    return tag if _BUILD_TAG.match(tag) else None


def fix_command(torch_version: str) -> str:
    """The one pip command that installs torch and torchvision as a pair of ``torch``'s build.

    ``--force-reinstall`` because pip otherwise keeps a mismatched torchvision whose version
    already satisfies the request.
    """
    build = _build(torch_version)
    index = f" --index-url {WHEEL_INDEX}{build}" if build else ""
    return f"pip install --force-reinstall torch torchvision{index}"


def torch_torchvision_problem() -> str | None:
    """One line naming both versions and the fix when they do not belong together, else None.

    None also when the pair cannot be judged (a version outside the release rule, or an
    untagged wheel where PyPI's may be a CPU or a CUDA build).
    """
    torch_version = installed_version("torch")
    vision_version = installed_version("torchvision")
    if torch_version is None:
        return None  # nothing to pair with; importing torch says so itself
    fix = fix_command(torch_version)
    if vision_version is None:
        return f"torchvision is not installed beside torch {torch_version}; install it with: {fix}"
    torch_release, vision_release = _release(torch_version), _release(vision_version)
    if torch_release is None or vision_release is None:
        return None
    why = None
    if torch_release[0] == 2 and vision_release[0] == 0 and vision_release[1] >= 15:
        wanted = (2, vision_release[1] - FIRST_PAIRED_MINOR)
        if wanted != torch_release:
            why = f"torchvision 0.{vision_release[1]} goes with torch {wanted[0]}.{wanted[1]}"
    torch_build, vision_build = _build(torch_version), _build(vision_version)
    if why is None and torch_build and vision_build and torch_build != vision_build:
        why = f"torch is the {torch_build} build, torchvision the {vision_build} build"
    if why is None and pypi_wheels_are_cuda_builds():
        if torch_build == "cpu" and "+" not in vision_version:
            why = "torch is the CPU build, torchvision PyPI's CUDA build"
        elif vision_build == "cpu" and "+" not in torch_version:
            why = "torchvision is the CPU build, torch PyPI's CUDA build"
    if why is None:
        return None
    return (
        f"torch {torch_version} and torchvision {vision_version} are builds that do not "
        f"belong together ({why}); install a matching pair with: {fix}"
    )
