"""What every exercise self-check shares: a one-line failure, and a guarded call.

A failed check raises ``CheckFailed`` (an ``AssertionError``, so pytest, nbval and nbgrader
treat it as a failed assertion). In Jupyter, IPython asks the exception how to show itself
(``_render_traceback_``): we show the one line that names the likely mistake, plus the
frames of the student's own code when their function raised, and hide the frames inside
this package, which would only bury the message.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

_PACKAGE = str(Path(__file__).resolve().parents[2])


class CheckFailed(AssertionError):
    """A self-check found a mistake; the message names it in one line."""

    def _render_traceback_(self) -> list[str]:
        lines = []
        cause = self.__cause__
        if cause is not None and cause.__traceback__ is not None:
            own = [
                frame
                for frame in traceback.extract_tb(cause.__traceback__)
                if not frame.filename.startswith(_PACKAGE)
            ]
            if own:
                lines.append("Your code raised it here:")
                lines.extend(line.rstrip("\n") for line in traceback.format_list(own))
        lines.append(f"\x1b[31mCheckFailed\x1b[0m: {self}")
        return lines


def self_check(check: Callable) -> Callable:
    """Turn the ``assert``s of ``check`` into one ``CheckFailed`` line; return True on success."""

    @functools.wraps(check)
    def run(*args, **kwargs):
        __tracebackhide__ = True  # pytest: start the report at the caller
        try:
            check(*args, **kwargs)
        except CheckFailed:
            raise
        except AssertionError as error:
            raise CheckFailed(str(error)) from None
        return True

    return run


def call(function: Callable, name: str, *args, **kwargs):
    """Call the student's ``function``; an unsolved stub or a crash becomes ``CheckFailed``."""
    try:
        return function(*args, **kwargs)
    except NotImplementedError:
        raise CheckFailed(
            f"{name} still raises NotImplementedError: replace the stub with your code."
        ) from None
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CheckFailed(f"{name} raised {type(error).__name__}: {first}") from error


def close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-4, atol: float = 1e-7) -> bool:
    """Same shape and equal within tolerance (both tensors)."""
    return (
        isinstance(a, torch.Tensor)
        and a.shape == b.shape
        and torch.allclose(a.double(), b.double(), rtol=rtol, atol=atol)
    )


def check_tensor(result, shape: tuple, what: str) -> torch.Tensor:
    """Assert ``result`` is a tensor of ``shape``; return it detached."""
    assert isinstance(result, torch.Tensor), (
        f"{what} should be a tensor, got {type(result).__name__}."
    )
    assert tuple(result.shape) == tuple(shape), (
        f"{what} has shape {tuple(result.shape)}; expected {tuple(shape)}."
    )
    return result.detach()


def check_same_keys(result, expected: dict, what: str) -> None:
    """Assert ``result`` is a dict with ``expected``'s keys and tensors of the same shapes."""
    assert isinstance(result, dict), (
        f"{what} should return a dict name -> tensor, got {type(result).__name__}."
    )
    assert set(result) == set(expected), (
        f"{what} should return one entry per weight {sorted(expected)}, got {sorted(result)}."
    )
    for name in expected:
        check_tensor(result[name], tuple(expected[name].shape), f"{what}[{name!r}]")
