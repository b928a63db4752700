"""Numbers in the course's prose must be numbers its executed notebooks printed.

What is covered, precisely:

- **Notebook prose.** In every markdown cell of the notebooks in ``NOTEBOOKS`` (the
  committed, executed ``.ipynb``), every *decimal* number (digits with a decimal point,
  optionally in scientific notation: ``2.58``, ``0.249``, ``8.49e-06``) must be a number
  of that notebook's own outputs (stream text, plain text and rendered markdown), written
  the same way, or that number rounded to the prose's fewer decimals ("about 0.7" for a
  printed 0.70 or 0.67, never for 0.64). For notebooks that quote the
  committed experiments, the text of ``docs/RESULTS.md`` counts as output too: its tables
  are generated from the CSVs and checked against them by ``tests/test_results_doc.py``.
- **Rendered sentences.** A sentence rendered from values with ``IPython.display.Markdown``
  is an output, so it cannot disagree with the value; this test needs nothing for it.
- **docs/INSTRUCTORS.md.** Every decimal number in the section of one notebook or exercise
  (a ``### 01 · …`` or ``### ex06 · …`` heading; every notebook and exercise with such a
  section) must appear the same way in that notebook's outputs (or, for the notebooks above that quote it, in ``docs/RESULTS.md``).
- **Numbers from another notebook** are listed in ``FROM_ELSEWHERE`` with the notebook
  whose outputs must print them.
- **Exceptions** are constants and cited figures (a yardstick, 1/N, a published error),
  listed in ``NOT_RESULTS`` with the reason; an exception that no longer occurs in the prose
  fails the test, so the list cannot go stale.

What is not covered: whole numbers ("38%", "354 of 1,000") and words ("about a third"),
which a sentence should render from the value when it reports a result; differences and
ratios of printed numbers, which must be rendered or listed; and a decimal that happens to
equal (or round to) some other number of the same output passes.
"""

from __future__ import annotations

import json
import re
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = {
    "01": "notebooks/01_gradient_decomposition.ipynb",
    "02": "notebooks/02_ranking.ipynb",
    "03": "notebooks/03_pruning.ipynb",
    "04": "notebooks/04_mnist_evaluation.ipynb",
    "05": "notebooks/05_second_order.ipynb",
    "06": "notebooks/06_structure_and_speed.ipynb",
    "07": "notebooks/07_when_gradients_win.ipynb",
    **{
        path.name.split("_")[0]: str(path.relative_to(ROOT))
        for path in sorted((ROOT / "notebooks" / "exercises").glob("ex*.ipynb"))
    },
}
QUOTES_RESULTS = {"03", "04", "05", "07", "ex11"}  # notebooks whose prose cites docs/RESULTS.md

# (where, number, why it is not a result of the notebook). "where" is a notebook key, or
# "INSTRUCTORS <key>" for a section of docs/INSTRUCTORS.md.
FROM_ELSEWHERE = [
    # (where, number, the notebook whose outputs print it)
    ("02", "1.71", "01"),  # the dense reference's test error, printed by notebook 01
    ("04", "0.42", "05"),  # |w| against the true loss change of removing one fc3 weight
    ("04", "0.99", "05"),  # -ḡw + ½Hw² against the same
    ("04", "0.36", "05"),  # taylor's |ḡw| against the same
    ("04", "0.40", "05"),  # fisher's ½E[g²]w² against the same
    ("04", "0.860", "02"),  # mean overlap of fisher at T = 10, two 1,000-digit draws, 95%
    ("04", "0.324", "02"),  # the same for plain fisher
    ("04", "0.824", "02"),  # the same for grasp
    ("04", "19.9", "02"),  # fisher at T = 10 pruned to 95%: validation error, no fine-tuning
    ("04", "8.0", "02"),  # magnitude pruned to 95%: the same
    ("ex10", "1.5", "02"),  # the dense reference's validation error
    ("INSTRUCTORS 04", "0.42", "05"),  # |w| against the true loss change of fc3
]
NOT_RESULTS = [
    ("01", "0.001", "1/N for N = 1,000 digits, the noise-floor yardstick"),
    ("01", "0.42", "a background pixel after MNIST's normalisation, (0 - 0.1307) / 0.3081"),
    ("02", "0.5", "J = 0.5, a worked example of 2J/(1+J)"),
    ("02", "0.95", "the stability yardstick, chosen by us"),
    ("02", "1.95", "1 + 0.95 in 2J/(1+J) for the yardstick"),
    ("02", "0.9", "the second yardstick, 0.9, in the extrapolation table's header"),
    ("04", "1.7", "SNIP's published dense error (Lee et al. 2019, Table 1)"),
    ("06", "2104.08378", "the arXiv number of Mishra et al. 2021, a citation"),
    ("02", "0.975", "the quantile of Student's t for a two-sided 95% interval"),
    ("02", "2.78", "t(0.975, 4): Student's t for 5 pairs, a table constant"),
    ("04", "0.975", "the quantile of Student's t for a two-sided 95% interval"),
    ("04", "4.30", "t(0.975, 2): Student's t for 3 seeds, a table constant"),
    ("INSTRUCTORS 01", "4.6", "P(|z| > 2) for pure noise, 4.55%"),
    ("INSTRUCTORS ex02", "0.37", "a sparsity the check tries, where int() and round() differ"),
    ("INSTRUCTORS ex05", "0.94", "1,000 × 235,200 × 4 bytes, arithmetic on sizes"),
    ("INSTRUCTORS ex05", "4.3", "1,000 × (784 + 300) × 4 bytes, arithmetic on sizes"),
    ("INSTRUCTORS ex10", "0.05", "the learning rate"),
    ("INSTRUCTORS ex10", "0.9", "the momentum"),
    ("ex02", "0.5", "a sparsity the check tries"),
    ("ex02", "0.9", "a sparsity the check tries"),
    ("ex02", "0.37", "a sparsity the check tries"),
    ("ex05", "0.001", "1/N for N = 1,000 digits"),
    ("ex05", "0.94", "1,000 × 235,200 × 4 bytes, arithmetic on sizes"),
    ("ex05", "4.3", "1,000 × (784 + 300) × 4 bytes, arithmetic on sizes"),
    ("ex06", "0.5", "the budget's margin, given in the exercise"),
    ("ex07", "5.5", "235,200² ≈ 5.5·10¹⁰, arithmetic on sizes"),
    ("ex09", "0.19", "2p − p² at p = 0.1, a worked example"),
    ("ex03", "0.9", "the check's momentum, given in the exercise"),
    ("ex09", "0.975", "the quantile of Student's t for a two-sided 95% interval"),
    ("ex09", "1.96", "the normal quantile, named as what not to use with few pairs"),
    ("ex09", "0.5", "the J = 0.5 threshold that question 2 asks about"),
    ("ex09", "3.18", "t(0.975, 3): Student's t for 4 pairs, a table constant"),
    ("ex10", "0.05", "the learning rate"),
    ("ex10", "0.9", "the momentum"),
    ("INSTRUCTORS 02", "0.95", "the stability yardstick"),
    ("INSTRUCTORS ex09", "0.975", "the quantile of Student's t for a two-sided 95% interval"),
    ("INSTRUCTORS ex09", "1.96", "the normal quantile, a slip the check names"),
    ("INSTRUCTORS 04", "1.6", "SNIP's published error at 95%"),
    ("INSTRUCTORS 04", "2.4", "SNIP's published error at 98%"),
    ("INSTRUCTORS 04", "0.0005", "SNIP's weight decay"),
    ("INSTRUCTORS 04", "0.1", "SNIP's learning rate"),
    ("INSTRUCTORS 04", "2.0", "L-OBS's published error"),
    ("INSTRUCTORS ex01", "0.022", "1/√2000, the size of pure averaging noise"),
    ("INSTRUCTORS ex04", "2.50", "the budget given in the exercise"),
    ("INSTRUCTORS ex06", "2.00", "the budget, dense + 0.5"),
    ("INSTRUCTORS ex06", "0.5", "the budget's margin, given in the exercise"),
    ("INSTRUCTORS ex12", "0.02", "the solution's fine-tuning learning rate, in its code"),
]

# A decimal not inside a longer token: "2.58%" and "2.58." count, "0.9.6" and "v1.2" do not.
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?:e[-+]?\d+)?(?!\.\d)(?![A-Za-z_\d])")
NUMBER = re.compile(r"\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def _cells(key: str) -> list[dict]:
    return json.loads((ROOT / NOTEBOOKS[key]).read_text())["cells"]


def _output_text(key: str) -> str:
    parts = []
    for cell in _cells(key):
        for output in cell.get("outputs", []):
            if "text" in output:
                parts.append("".join(output["text"]))
            for kind in ("text/plain", "text/markdown"):
                if kind in output.get("data", {}):
                    parts.append("".join(output["data"][kind]))
    return "\n".join(parts)


def _printed(key: str) -> set[str]:
    """Every number the outputs print, as written and rounded to each shorter precision."""
    text = _output_text(key)
    if key in QUOTES_RESULTS:
        text += (ROOT / "docs" / "RESULTS.md").read_text()
    printed = set()
    for number in NUMBER.findall(text.replace(",", "")):
        printed.add(number)
        if "." in number and "e" not in number:
            value = Decimal(number)
            for places in range(len(number.split(".")[1])):
                step = Decimal(1).scaleb(-places)
                printed.add(str(value.quantize(step, rounding=ROUND_HALF_UP)))
    return printed


def _exceptions(where: str) -> set[str]:
    allowed = {number for place, number, _ in NOT_RESULTS if place == where}
    return allowed | {number for place, number, _ in FROM_ELSEWHERE if place == where}


@pytest.mark.parametrize(("where", "number", "source"), FROM_ELSEWHERE)
def test_numbers_quoted_from_another_notebook_are_printed_there(where, number, source):
    assert number in _printed(source), f"{where} quotes {number}, which {source} does not print"


def _prose_numbers(text: str) -> list[str]:
    # Code spans and file names are not prose (e.g. `block_size=1`, v0.9.6).
    text = re.sub(r"`[^`]*`", "", text)
    return DECIMAL.findall(text)


def _instructors_sections() -> dict[str, str]:
    text = (ROOT / "docs" / "INSTRUCTORS.md").read_text()
    sections, key = {}, None
    for line in text.splitlines():
        heading = re.match(r"### (ex\d\d|\d\d) · ", line)
        if heading:
            key = heading.group(1)
        elif line.startswith("#"):
            key = None
        elif key in NOTEBOOKS:
            sections[key] = sections.get(key, "") + line + "\n"
    return sections


@pytest.mark.parametrize("key", sorted(NOTEBOOKS))
def test_notebook_prose_numbers_are_printed_by_the_notebook(key):
    printed, allowed = _printed(key), _exceptions(key)
    prose = "\n".join(
        "".join(cell["source"]) for cell in _cells(key) if cell["cell_type"] == "markdown"
    )
    missing = [n for n in _prose_numbers(prose) if n not in printed and n not in allowed]
    assert not missing, (
        f"{NOTEBOOKS[key]}: these numbers in the prose are not in the outputs: {missing}. "
        "Render the sentence from the value, or correct it to what the cell printed."
    )


@pytest.mark.parametrize("key", sorted(_instructors_sections()))
def test_instructors_numbers_are_printed_by_their_notebook(key):
    section = _instructors_sections()[key]
    printed, allowed = _printed(key), _exceptions(f"INSTRUCTORS {key}")
    missing = [n for n in _prose_numbers(section) if n not in printed and n not in allowed]
    assert not missing, (
        f"docs/INSTRUCTORS.md, section {key}: {missing} are not in {NOTEBOOKS[key]}'s outputs."
    )


def test_every_exception_is_still_used():
    sections = _instructors_sections()
    for where, number, why in NOT_RESULTS + FROM_ELSEWHERE:
        if where.startswith("INSTRUCTORS "):
            text = sections.get(where.split()[1], "")
        else:
            text = "\n".join(
                "".join(c["source"]) for c in _cells(where) if c["cell_type"] == "markdown"
            )
        assert number in _prose_numbers(text), f"{where}: {number} ({why}) no longer occurs"
