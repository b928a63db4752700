"""Put the full MNIST into the image's cache once, at build time, through our own loader.

Binder sessions then find it in ``gradprune_lite.experiment.data.default_cache_dir()`` and never
download. When ``$GRADPRUNE_DATA`` names a local copy (offline builds, the tests), its raw
files are copied into the cache instead of downloading. Either way the loader then reads
the cache back, and the build fails unless both full splits come out of it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from gradprune_lite.experiment.data import default_cache_dir, mnist

FULL_SIZES = {"train": 60_000, "test": 10_000}


def local_raw_folder(root: Path) -> Path:
    """The folder under ``root`` that holds the raw MNIST files (MNIST/raw, raw, or root)."""
    for folder in (root / "MNIST" / "raw", root / "raw", root):
        if any(folder.glob("train-images-idx3-ubyte*")):
            return folder
    raise SystemExit(f"GRADPRUNE_DATA={root} holds no MNIST raw files (expected MNIST/raw/).")


def main() -> None:
    cache = default_cache_dir()
    local = os.environ.pop("GRADPRUNE_DATA", None)  # popped, so the loader must use the cache
    if local:
        target = cache / "MNIST" / "raw"
        target.mkdir(parents=True, exist_ok=True)
        for path in local_raw_folder(Path(local)).glob("*-ubyte*"):
            shutil.copyfile(path, target / path.name)
        print(f"copied MNIST from {local} into {target}")
    for split, size in FULL_SIZES.items():
        digits = mnist(split, download=True)
        if digits.is_subset or len(digits) != size:
            sys.exit(
                f"MNIST {split} did not reach the cache {cache}: got {len(digits)} digits from "
                f"{digits.source}. Check the build's network access, or set GRADPRUNE_DATA."
            )


if __name__ == "__main__":
    main()
