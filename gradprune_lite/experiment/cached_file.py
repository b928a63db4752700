"""Cached network files that several processes share: one writer, whole files, clear errors.

``gp.trained`` (the dense references) and ``transfer.pretrained`` (notebook 07's network
pretrained on digits 0-4) cache what they train under ``GRADPRUNE_CACHE``. Two processes
can need the same file at once (two notebook kernels, two workers of ``pytest -n 2``), a
cache can be read-only (a prepared image), and a file can be damaged; these three helpers
handle that once for both.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn


@contextmanager
def one_writer(path: Path):
    """Hold an exclusive lock beside ``path`` while checking for, or training, its network.

    Without it, two processes that need the same uncached network at once (two notebook
    kernels, two test workers under ``pytest -n 2``) would both train it: LeNet-5 takes
    about 2 minutes of CPU, twice over on a machine that has only two cores. The lock is
    an advisory ``flock`` that the system drops when its holder exits, even on a crash, so
    no stale lock is ever left; the empty ``.lock`` file stays beside the ``.pt`` file
    (deleting it would let a third process lock a new file while a second still waits on
    the old one). Where ``fcntl`` does not exist (Windows), the cache folder cannot be
    written (a read-only image: an existing file still loads) or the file system refuses
    locks, there is no lock: both may train, and each writes the same bytes atomically.
    """
    try:
        import fcntl

        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path.with_suffix(".lock"), "a")  # noqa: SIM115 - closed below
    except (ImportError, OSError):
        handle = None  # no lock; the body runs outside this handler, so its errors are its own
    if handle is None:
        yield
        return
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError:  # a file system without locks (ENOLCK on some NFS mounts)
            pass
        yield
    finally:
        handle.close()  # closing releases the lock


def load_into(net: nn.Module, path: Path, key: str | None = None) -> None:
    """Load ``path``'s weights (its entry ``key``, or the whole file) into ``net``; a damaged
    file is a ValueError that says what to do."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(saved if key is None else saved[key])
    except Exception as error:  # torch.load's errors on a damaged file are many and obscure
        first_line = (str(error).strip().splitlines() or [""])[0]  # the rest is torch's advice
        raise ValueError(
            f"the cached network {path} cannot be loaded ({type(error).__name__}: "
            f"{first_line}); "
            "the file is damaged or was not written by gradprune-lite. Delete it, and the "
            "next call trains the network again."
        ) from error


def save_atomically(saved: object, path: Path) -> None:
    """``torch.save(saved)`` to ``path`` under a name of this process's own, then renamed, so
    a reader never sees half a file; an unwritable cache (a read-only image) warns and
    keeps the trained network rather than losing the training to an OSError."""
    partial = path.with_suffix(f".{os.getpid()}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)  # not made by the lock without fcntl
        torch.save(saved, partial)
        partial.replace(path)
    except (OSError, RuntimeError) as error:  # torch.save reports a failed open as RuntimeError
        if partial.is_file():
            partial.unlink()
        warnings.warn(
            f"the trained network could not be cached at {path} ({error}), so it will be "
            "trained again next time; set GRADPRUNE_CACHE (or cache_dir) to a folder you "
            "can write.",
            stacklevel=3,
        )
