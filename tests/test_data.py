"""gp.mnist: the resolution order, the shipped subset, and checks of broken files."""

from __future__ import annotations

import os
import shutil
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.datasets.mnist import read_image_file, read_label_file

import gradprune_lite as gp
from gradprune_lite.experiment import data

# The fake folders below hold a handful of digits, which gp.mnist rightly warns about.
pytestmark = pytest.mark.filterwarnings("ignore:.*not the .* of MNIST")

FULL = os.environ.get("GRADPRUNE_DATA")
needs_full = pytest.mark.skipif(
    not FULL or not Path(FULL, "MNIST", "raw").is_dir(),
    reason="full MNIST not available: set GRADPRUNE_DATA to the folder holding MNIST/raw",
)


@pytest.fixture(scope="module")
def full_test():
    return gp.mnist("test", verbose=False)


def write_idx_images(path: Path, pixels: np.ndarray, count: int | None = None, magic=2051):
    n, rows, cols = pixels.shape
    header = struct.pack(">IIII", magic, n if count is None else count, rows, cols)
    path.write_bytes(header + pixels.astype(np.uint8).tobytes())


def write_idx_labels(path: Path, labels: np.ndarray, magic=2049):
    path.write_bytes(struct.pack(">II", magic, len(labels)) + labels.astype(np.uint8).tobytes())


def fake_raw(root: Path, n: int = 5, label_values=None) -> Path:
    """A root holding MNIST/raw with n tiny-but-valid digits per split."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 10 if label_values is None else np.asarray(label_values)
    for split in ("train", "t10k"):
        write_idx_images(raw / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx_labels(raw / f"{split}-labels-idx1-ubyte", labels)
    return root


@needs_full
def test_full_split_shapes_dtypes_and_sizes(full_test):
    assert full_test.images.shape == (10_000, 1, 28, 28)
    assert full_test.images.dtype == torch.float32
    assert full_test.labels.dtype == torch.int64
    assert not full_test.is_subset
    assert set(full_test.labels.unique().tolist()) == set(range(10))


@needs_full
def test_our_idx_reader_matches_torchvision_reader():
    raw = Path(FULL, "MNIST", "raw")
    ours = data.read_idx_images(raw / "t10k-images-idx3-ubyte")
    assert torch.equal(ours, read_image_file(str(raw / "t10k-images-idx3-ubyte")))
    labels = data.read_idx_labels(raw / "t10k-labels-idx1-ubyte")
    assert torch.equal(labels, read_label_file(str(raw / "t10k-labels-idx1-ubyte")).long())


@needs_full
def test_normalisation_is_pixels_over_255_standardised(full_test):
    raw = read_image_file(str(Path(FULL, "MNIST", "raw", "t10k-images-idx3-ubyte")))
    expected = (raw[:1000].double() / 255 - 0.1307) / 0.3081
    assert torch.allclose(full_test.images[:1000, 0].double(), expected, atol=1e-5)


@needs_full
def test_shipped_subset_is_the_first_digits_of_the_full_set(full_test, monkeypatch):
    pixels, labels = data._load_subset("test")
    assert len(labels) == 2_000
    assert torch.equal(data.normalise(pixels), full_test.images[:2_000])
    assert torch.equal(labels, full_test.labels[:2_000])


def test_fallback_uses_the_subset_and_warns_without_network(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("GRADPRUNE_DATA", raising=False)
    monkeypatch.setenv("GRADPRUNE_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("GRADPRUNE_OFFLINE", "1")

    def no_network(cache):
        raise AssertionError("the offline fallback must not try to download")

    monkeypatch.setattr(data, "_try_download", no_network)
    with pytest.warns(UserWarning, match="GRADPRUNE_DATA"):
        train = gp.mnist("train")
    assert train.is_subset
    assert len(train) == 10_000
    assert train.images.shape == (10_000, 1, 28, 28)
    assert "subset" in train.source
    assert "subset" in capsys.readouterr().out


def test_failed_download_falls_back_to_the_subset(tmp_path, monkeypatch):
    monkeypatch.delenv("GRADPRUNE_DATA", raising=False)
    monkeypatch.delenv("GRADPRUNE_OFFLINE", raising=False)
    monkeypatch.setenv("GRADPRUNE_CACHE", str(tmp_path))
    monkeypatch.setattr(data, "_try_download", lambda cache: "URLError: no network")
    with pytest.warns(UserWarning, match="no network"):
        test = gp.mnist("test", verbose=False)
    assert test.is_subset and len(test) == 2_000


def test_cache_folder_is_used_when_it_holds_mnist(tmp_path, monkeypatch):
    monkeypatch.delenv("GRADPRUNE_DATA", raising=False)
    monkeypatch.setenv("GRADPRUNE_CACHE", str(fake_raw(tmp_path)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 5 digits are not 60,000: a warning, not an error
        train = gp.mnist("train", download=False, verbose=False)
    assert not train.is_subset and len(train) == 5


def test_corrupt_subset_is_refused(tmp_path, monkeypatch):
    broken = tmp_path / "mnist_subset.npz"
    payload = bytearray(data.SUBSET_PATH.read_bytes())
    payload[1000] ^= 0xFF
    broken.write_bytes(bytes(payload))
    monkeypatch.setattr(data, "SUBSET_PATH", broken)
    with pytest.raises(ValueError, match="corrupt"):
        data._load_subset("train")


def test_explicit_root_without_mnist_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="holds no MNIST raw files"):
        gp.mnist("train", root=tmp_path)


def test_truncated_image_file_names_the_file(tmp_path):
    root = fake_raw(tmp_path)
    path = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="truncated") as error:
        gp.mnist("train", root=root, verbose=False)
    assert str(path) in str(error.value) and "GRADPRUNE_DATA" in str(error.value)


def test_wrong_magic_number_is_an_error(tmp_path):
    root = fake_raw(tmp_path)
    path = root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    write_idx_labels(path, np.arange(5), magic=2051)
    with pytest.raises(ValueError, match="magic number"):
        gp.mnist("test", root=root, verbose=False)


def test_label_outside_0_to_9_is_an_error(tmp_path):
    root = fake_raw(tmp_path, label_values=[0, 1, 2, 3, 12])
    with pytest.raises(ValueError, match="0..9"):
        gp.mnist("test", root=root, verbose=False)


def test_gzipped_raw_files_are_read(tmp_path):
    import gzip

    root = fake_raw(tmp_path)
    raw = root / "MNIST" / "raw"
    plain = gp.mnist("test", root=root, verbose=False)
    for path in list(raw.iterdir()):
        with gzip.open(f"{path}.gz", "wb") as handle:
            handle.write(path.read_bytes())
        path.unlink()
    gzipped = gp.mnist("test", root=root, verbose=False)
    assert torch.equal(plain.images, gzipped.images)


def test_bad_split_and_limit_are_errors(tmp_path):
    with pytest.raises(ValueError, match="split"):
        gp.mnist("validation", root=fake_raw(tmp_path))
    with pytest.raises(ValueError, match="limit"):
        gp.mnist("train", root=tmp_path, limit=0)


def test_shuffled_batches_visit_every_digit_once(tmp_path):
    digits = gp.mnist("train", root=fake_raw(tmp_path, n=23), verbose=False, limit=23)
    seen = torch.cat([labels for _, labels in digits.batches(5, shuffle=True, seed=1)])
    assert len(seen) == 23
    assert sorted(seen.tolist()) == sorted(digits.labels.tolist())
    again = torch.cat([labels for _, labels in digits.batches(5, shuffle=True, seed=1)])
    assert torch.equal(seen, again)


def test_take_and_limit_keep_the_first_digits(tmp_path):
    root = fake_raw(tmp_path, n=9)
    digits = gp.mnist("train", root=root, verbose=False)
    assert torch.equal(digits.take(4).images, digits.images[:4])
    assert torch.equal(
        gp.mnist("train", root=root, limit=4, verbose=False).labels, digits.labels[:4]
    )


def test_subset_provenance_records_checksums():
    import json

    info = json.loads(data.SUBSET_INFO_PATH.read_text())
    assert info["npz_sha256"] == data.file_sha256(data.SUBSET_PATH)
    assert set(info["sources"]) == {name for pair in data._FILES.values() for name in pair}
    shutil.disk_usage(data.SUBSET_PATH.parent)  # the file is on disk, inside the package
    assert data.SUBSET_PATH.stat().st_size < 3_000_000
