"""Build the MNIST subset shipped inside gradprune-lite, with its provenance and checksums.

Usage:
    python scripts/build_mnist_subset.py [MNIST_RAW_FOLDER]

MNIST_RAW_FOLDER holds torchvision's raw IDX files (default: $GRADPRUNE_DATA/MNIST/raw).
Writes gradprune_lite/experiment/data/mnist_subset.npz (the first 10,000 training and first 2,000
test digits, uint8, compressed) and mnist_subset.json beside it (sha256 and md5 of the
npz and of the source files, so both ends of the copy can be checked).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

from gradprune_lite.experiment.data import SUBSET_INFO_PATH, SUBSET_PATH, _load_raw

TRAIN_COUNT = 10_000
TEST_COUNT = 2_000


def digests(path: Path) -> dict[str, str]:
    data = path.read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "md5": hashlib.md5(data).hexdigest()}


def main() -> None:
    if len(sys.argv) > 1:
        raw = Path(sys.argv[1])
    else:
        raw = Path(os.environ["GRADPRUNE_DATA"]) / "MNIST" / "raw"
    train_pixels, train_labels = _load_raw(raw, "train")
    test_pixels, test_labels = _load_raw(raw, "test")
    np.savez_compressed(
        SUBSET_PATH,
        train_images=train_pixels[:TRAIN_COUNT].numpy(),
        train_labels=train_labels[:TRAIN_COUNT].numpy().astype(np.uint8),
        test_images=test_pixels[:TEST_COUNT].numpy(),
        test_labels=test_labels[:TEST_COUNT].numpy().astype(np.uint8),
    )
    npz = digests(SUBSET_PATH)
    info = {
        "description": (
            f"First {TRAIN_COUNT} training and first {TEST_COUNT} test digits of MNIST "
            "(LeCun, Cortes and Burges), uint8 pixels 28x28 and uint8 labels, in file order."
        ),
        "built_by": "python scripts/build_mnist_subset.py",
        "train_count": TRAIN_COUNT,
        "test_count": TEST_COUNT,
        "npz_sha256": npz["sha256"],
        "npz_md5": npz["md5"],
        "sources": {
            name: digests(raw / name) for name in sorted(os.listdir(raw)) if name.endswith("ubyte")
        },
    }
    SUBSET_INFO_PATH.write_text(json.dumps(info, indent=2) + "\n")
    print(f"wrote {SUBSET_PATH} ({SUBSET_PATH.stat().st_size:,} bytes) and {SUBSET_INFO_PATH}")


if __name__ == "__main__":
    main()
