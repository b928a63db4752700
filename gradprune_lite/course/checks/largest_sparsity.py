"""Exercise 4: the largest sparsity whose validation error stays under a budget."""

from __future__ import annotations

from collections.abc import Callable

from ._common import call, self_check

LEVELS = [0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99]
# label → (error in % at each level, the answer for a limit of 2.0)
CURVES = {
    "rising": ({0.0: 1.5, 0.5: 1.5, 0.8: 1.6, 0.9: 1.8, 0.95: 2.3, 0.98: 3.0, 0.99: 9.0}, 0.9),
    "with a dip": ({0.0: 1.9, 0.5: 1.7, 0.8: 2.1, 0.9: 1.9, 0.95: 2.5, 0.98: 4.0, 0.99: 8.0}, 0.5),
    "never under": ({s: 2.5 for s in LEVELS}, None),
    "always under": ({s: 1.0 for s in LEVELS}, 0.99),
    "exactly at the limit": ({0.0: 1.0, 0.5: 1.0, 0.8: 2.0, 0.9: 2.0, 0.95: 2.0,
                              0.98: 3.0, 0.99: 3.0}, 0.5),
}  # fmt: skip


@self_check
def check_largest_sparsity(largest_sparsity: Callable) -> bool:
    """Check ``largest_sparsity(error_at, levels, limit) -> float | None``.

    The rule: scan ``levels`` from the smallest up; the answer is the largest level ``s``
    such that the error is strictly below ``limit`` at ``s`` **and at every smaller scanned
    level** (None if the smallest level already fails). A dip back under the limit after a
    failure is not taken: on one validation set it is as likely noise as a real effect.
    """
    for label, (errors, want) in CURVES.items():
        got = call(largest_sparsity, "largest_sparsity", errors.__getitem__, list(LEVELS), 2.0)
        if got == want:
            continue
        assert not (want is None and got is not None), (
            f"curve {label!r}: even the smallest level is not under 2%, so return None."
        )
        assert not (label == "exactly at the limit" and got == 0.95), (
            "An error of exactly 2% is not *under* 2%: use error < limit, not <=."
        )
        assert not (label == "with a dip" and got == 0.9), (
            "You took the dip at 0.9: 0.8 already failed, so the answer stops at 0.5."
        )
        raise AssertionError(f"curve {label!r}: expected {want!r}, got {got!r}.")
    shuffled = [0.99, 0.0, 0.9, 0.5, 0.8, 0.95]
    got = call(largest_sparsity, "largest_sparsity", CURVES["rising"][0].__getitem__, shuffled, 2.0)
    assert got == 0.9, f"With levels out of order {shuffled} the answer is 0.9, got {got!r}."
