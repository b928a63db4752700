"""MNIST, offline first: find real digits wherever they are, check them, and say where from.

``gp.mnist(split)`` looks for the data in this order and uses the first that exists:

1. an explicit ``root`` (the folder that holds ``MNIST/raw``, or ``raw`` itself);
2. the folder named by ``$GRADPRUNE_DATA`` (same layout);
3. the cache folder (``$GRADPRUNE_CACHE`` or ``~/.cache/gradprune-lite``), downloading
   into it with torchvision when downloads are allowed (``download=True``, and
   ``$GRADPRUNE_OFFLINE`` is not ``1``) and the network answers;
4. a small *real* subset shipped in the package: the first 10,000 training and first
   2,000 test digits, checked against its recorded sha256. A warning says how to get
   the full set.

The raw IDX files are read by our own parser, which checks magic numbers, sizes, image
dimensions and the label range and names the broken file in its error. Pixels stay
``uint8`` (1 byte each) until the one normalisation into float32.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._install_check import torch_torchvision_problem

#: Mean and standard deviation of the MNIST training pixels (scaled to [0, 1]).
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

SPLITS = ("train", "test")
#: Where the data warnings say they come from, in place of a file and a line of source.
_WARNING_ORIGIN = "gradprune-lite"
#: warn_explicit's registry: each distinct data warning is shown once per session.
_WARNED: dict = {}
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_FULL_SIZES = {"train": 60_000, "test": 10_000}
_IMAGE_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
_LABEL_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension

SUBSET_PATH = Path(__file__).parent / "data" / "mnist_subset.npz"
SUBSET_INFO_PATH = Path(__file__).parent / "data" / "mnist_subset.json"

_FIX_HINT = (
    "Delete the file and download MNIST again (torchvision.datasets.MNIST(root, "
    "download=True)), or point GRADPRUNE_DATA at a folder holding a good copy of MNIST/raw."
)


@dataclass
class Digits:
    """A set of MNIST digits held as tensors, ready for index-based batching.

    Attributes:
        images: N×1×28×28 float32, normalised with the MNIST mean and std.
        labels: N int64, the digit classes 0..9.
        source: where the digits came from, in words (a path, and "full" or "subset").
        is_subset: True when these are the shipped subset rather than the full split.
    """

    images: torch.Tensor
    labels: torch.Tensor
    source: str
    is_subset: bool

    def __len__(self) -> int:
        return len(self.labels)

    def batches(
        self, batch_size: int = 256, shuffle: bool = False, seed: int | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(images, labels)`` batches by indexing; the last batch may be smaller.

        ``shuffle=True`` draws a fresh permutation (reproducible with ``seed``).
        """
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        n = len(self)
        if shuffle:
            generator = torch.Generator()
            if seed is not None:
                generator.manual_seed(seed)
            else:
                generator.seed()
            order = torch.randperm(n, generator=generator).to(self.images.device)
            for start in range(0, n, batch_size):
                index = order[start : start + batch_size]
                yield self.images[index], self.labels[index]
        else:
            for start in range(0, n, batch_size):
                yield (
                    self.images[start : start + batch_size],
                    self.labels[start : start + batch_size],
                )

    def slice(self, start: int, stop: int | None, note: str | None = None) -> Digits:
        """Digits ``start`` to ``stop`` (a view, no copy); ``note`` is added to the source."""
        source = self.source if note is None else f"{self.source}, {note}"
        return Digits(self.images[start:stop], self.labels[start:stop], source, self.is_subset)

    def take(self, n: int) -> Digits:
        """The first ``n`` digits (all of them when ``n`` ≥ len), as a new ``Digits``."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"take(n) needs a positive integer n, got {n!r}.")
        n = min(n, len(self))
        return Digits(self.images[:n], self.labels[:n], self.source, self.is_subset)

    def to(self, device) -> Digits:
        """The same digits on ``device`` (a no-op copy-free view when already there)."""
        return Digits(self.images.to(device), self.labels.to(device), self.source, self.is_subset)


def normalise(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 N×28×28 pixels → float32 N×1×28×28, scaled to [0, 1] then standardised."""
    return ((pixels.to(torch.float32) / 255.0 - MNIST_MEAN) / MNIST_STD).unsqueeze(1)


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError) as error:
        raise ValueError(f"cannot read MNIST file {path}: {error}. {_FIX_HINT}") from None


def read_idx_images(path: str | os.PathLike) -> torch.Tensor:
    """Read an IDX image file (optionally ``.gz``) into a uint8 tensor N×28×28, checked."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 16:
        raise ValueError(f"{path} is truncated ({len(raw)} bytes, no IDX header). {_FIX_HINT}")
    magic, count, rows, cols = np.frombuffer(raw[:16], dtype=">u4").tolist()
    if magic != _IMAGE_MAGIC:
        raise ValueError(
            f"{path} is not an MNIST image file: magic number {magic}, expected {_IMAGE_MAGIC}. "
            f"{_FIX_HINT}"
        )
    if (rows, cols) != (28, 28):
        raise ValueError(f"{path} holds {rows}×{cols} images, expected 28×28. {_FIX_HINT}")
    expected = 16 + count * rows * cols
    if len(raw) != expected:
        raise ValueError(
            f"{path} is {'truncated' if len(raw) < expected else 'too long'}: "
            f"{len(raw)} bytes, but its header promises {count} images ({expected} bytes). "
            f"{_FIX_HINT}"
        )
    pixels = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(count, rows, cols)
    return torch.from_numpy(pixels.copy())


def read_idx_labels(path: str | os.PathLike) -> torch.Tensor:
    """Read an IDX label file (optionally ``.gz``) into an int64 tensor N, checked 0..9."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 8:
        raise ValueError(f"{path} is truncated ({len(raw)} bytes, no IDX header). {_FIX_HINT}")
    magic, count = np.frombuffer(raw[:8], dtype=">u4").tolist()
    if magic != _LABEL_MAGIC:
        raise ValueError(
            f"{path} is not an MNIST label file: magic number {magic}, expected {_LABEL_MAGIC}. "
            f"{_FIX_HINT}"
        )
    if len(raw) != 8 + count:
        raise ValueError(
            f"{path} is {'truncated' if len(raw) < 8 + count else 'too long'}: {len(raw)} bytes, "
            f"but its header promises {count} labels ({8 + count} bytes). {_FIX_HINT}"
        )
    labels = np.frombuffer(raw, dtype=np.uint8, offset=8)
    if count and int(labels.max()) > 9:
        raise ValueError(
            f"{path} holds label {int(labels.max())}; MNIST labels are 0..9. {_FIX_HINT}"
        )
    return torch.from_numpy(labels.astype(np.int64))


def _raw_folder(root: Path) -> Path | None:
    """The folder holding the raw IDX files under ``root``, or None."""
    for folder in (root / "MNIST" / "raw", root / "raw", root):
        if all(_find_file(folder, name) is not None for pair in _FILES.values() for name in pair):
            return folder
    return None


def _find_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _load_raw(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    image_name, label_name = _FILES[split]
    image_path, label_path = _find_file(folder, image_name), _find_file(folder, label_name)
    pixels, labels = read_idx_images(image_path), read_idx_labels(label_path)
    if len(pixels) != len(labels):
        raise ValueError(
            f"{image_path} holds {len(pixels)} images but {label_path} holds {len(labels)} "
            f"labels; the files belong to different sets. {_FIX_HINT}"
        )
    return pixels, labels


def _describe(folder: Path, split: str, count: int) -> str:
    whole = "full " if count == _FULL_SIZES[split] else f"{count:,}-digit "
    return f"{folder} ({whole}{split} set)"


def default_cache_dir() -> Path:
    """``$GRADPRUNE_CACHE`` or ``~/.cache/gradprune-lite``: where downloads go."""
    return Path(os.environ.get("GRADPRUNE_CACHE") or Path.home() / ".cache" / "gradprune-lite")


def downloads_allowed(download: bool | None = None) -> bool:
    """``download`` when given; otherwise True unless ``$GRADPRUNE_OFFLINE`` is ``1``."""
    if download is not None:
        return bool(download)
    return os.environ.get("GRADPRUNE_OFFLINE", "").strip().lower() not in ("1", "true", "yes")


def _try_download(cache: Path) -> str | None:
    """Download MNIST into ``cache`` with torchvision; return None or the error in words."""
    try:
        from torchvision.datasets import MNIST
    except Exception as error:
        # A torchvision built for another torch fails right here ("operator
        # torchvision::nms does not exist"): the install is at fault, not MNIST, so its
        # own warning names both versions and the command that fixes them.
        problem = torch_torchvision_problem()
        if problem is None:
            return f"torchvision does not import: {type(error).__name__}: {error}"
        _warn(problem)
        return "torchvision does not import: its build does not match torch's, see above"
    try:
        for train in (True, False):
            MNIST(str(cache), train=train, download=True)
    except Exception as error:  # any network or disk failure means: use the subset
        return f"{type(error).__name__}: {error}"
    return None


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load_subset(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The shipped subset of ``split``, after checking the npz against its recorded sha256."""
    info = json.loads(SUBSET_INFO_PATH.read_text())
    actual = file_sha256(SUBSET_PATH)
    if actual != info["npz_sha256"]:
        raise ValueError(
            f"the shipped MNIST subset {SUBSET_PATH} is corrupt: sha256 {actual}, expected "
            f"{info['npz_sha256']} (from {SUBSET_INFO_PATH.name}). Reinstall gradprune-lite or "
            "rebuild it with scripts/build_mnist_subset.py."
        )
    with np.load(SUBSET_PATH) as arrays:
        pixels = torch.from_numpy(arrays[f"{split}_images"])
        labels = torch.from_numpy(arrays[f"{split}_labels"].astype(np.int64))
    return pixels, labels


def _check_arrays(pixels: torch.Tensor, labels: torch.Tensor, where: str) -> None:
    """Raise unless pixels are uint8 N×28×28 and labels are int64 N in 0..9."""
    if pixels.dtype != torch.uint8 or pixels.ndim != 3 or tuple(pixels.shape[1:]) != (28, 28):
        raise ValueError(
            f"{where}: images must be uint8 N×28×28, got {pixels.dtype} {tuple(pixels.shape)}."
        )
    if labels.ndim != 1 or len(labels) != len(pixels):
        raise ValueError(
            f"{where}: {len(pixels)} images but labels of shape {tuple(labels.shape)}."
        )
    if len(labels) and not (0 <= int(labels.min()) and int(labels.max()) <= 9):
        raise ValueError(f"{where}: labels outside 0..9.")


def _warn(message: str) -> None:
    """A ``UserWarning`` that names gradprune-lite instead of a file and line.

    ``warnings.warn`` prints the source line of whichever frame ``stacklevel`` points at;
    from a notebook that is a line of library code (or of the student's cell), which reads
    as if the code were broken. With no file to quote, only the message is shown.
    """
    warnings.warn_explicit(message, UserWarning, _WARNING_ORIGIN, 0, registry=_WARNED)


def mnist(
    split: str = "train",
    root: str | os.PathLike | None = None,
    *,
    limit: int | None = None,
    verbose: bool = True,
    download: bool | None = None,
) -> Digits:
    """Load an MNIST split as normalised tensors, from the first source that has it.

    Args:
        split: ``"train"`` (60,000 digits) or ``"test"`` (10,000).
        root: a folder holding ``MNIST/raw`` (torchvision's layout) or the raw files; when
            given, it must hold them (no fallback).
        limit: keep only the first ``limit`` digits (for quick runs).
        verbose: print one line naming the source.
        download: allow (True) or forbid (False) a torchvision download into the cache;
            None follows ``$GRADPRUNE_OFFLINE``.

    Returns:
        ``Digits`` with images N×1×28×28 float32 and labels N int64.

    Raises:
        ValueError: for a bad split or limit, a ``root``/``$GRADPRUNE_DATA`` folder without
            MNIST, or a truncated/corrupt file (the message names it and the fix).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}.")

    pixels = labels = None
    is_subset = False
    for given, what in ((root, "root"), (os.environ.get("GRADPRUNE_DATA"), "GRADPRUNE_DATA")):
        if given:
            folder = _raw_folder(Path(given))
            if folder is None:
                raise ValueError(
                    f"{what}={str(given)!r} holds no MNIST raw files (expected MNIST/raw/"
                    f"{_FILES['train'][0]} and the other three). Point it at the folder that "
                    "contains MNIST/, or leave it unset to use the cache or the shipped subset."
                )
            pixels, labels = _load_raw(folder, split)
            source = _describe(folder, split, len(labels))
            break
    else:
        cache = default_cache_dir()
        folder = _raw_folder(cache)
        failure = "downloads are off (download=False or GRADPRUNE_OFFLINE=1)"
        if folder is None and downloads_allowed(download):
            failure = _try_download(cache)
            folder = _raw_folder(cache)
        if folder is not None:
            pixels, labels = _load_raw(folder, split)
            source = _describe(folder, split, len(labels))
        else:
            pixels, labels = _load_subset(split)
            is_subset = True
            source = f"shipped subset {SUBSET_PATH.name} (first {len(labels):,} {split} digits)"
            _warn(
                f"Full MNIST not found ({failure}); using the shipped subset of "
                f"{len(labels):,} real {split} digits. For the full set, set GRADPRUNE_DATA to a "
                "folder holding MNIST/raw, or allow the download (network access, "
                "GRADPRUNE_OFFLINE unset)."
            )

    _check_arrays(pixels, labels, source)
    if not is_subset and len(labels) != _FULL_SIZES[split]:
        _warn(f"{source} has {len(labels)} digits, not the {_FULL_SIZES[split]} of MNIST.")
    if limit is not None:
        pixels, labels = pixels[:limit], labels[:limit]
    if verbose:
        print(f"MNIST {split}: {len(labels):,} digits from {source}")
    return Digits(normalise(pixels), labels, source, is_subset)
