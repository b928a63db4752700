"""The figure of docs/RESULTS.md, "When gradient information wins", from the committed CSV.

    python scripts/transfer_figure.py        # writes docs/results/transfer/results.png

Test error against sparsity at each fine-tuning budget of the transfer experiment (mean ±
sd over seeds, the learning rate chosen on validation, the dense network's error beside),
drawn by ``gradprune_lite.course.transfer_view.budget_figure`` from
``docs/results/transfer/runs.csv``, the figure notebook 07 shows.
"""

from __future__ import annotations

from pathlib import Path

from gradprune_lite.course.transfer_view import budget_figure
from gradprune_lite.experiment.results import transfer_summary

FIGURE = Path(__file__).resolve().parents[1] / "docs" / "results" / "transfer" / "results.png"


def main() -> None:
    budget_figure(transfer_summary()).savefig(FIGURE, dpi=100, bbox_inches="tight")
    print(f"wrote {FIGURE}")


if __name__ == "__main__":
    main()
