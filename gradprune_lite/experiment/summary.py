"""The article's four questions in one table, and the other tables of ``docs/RESULTS.md``.

The article says gradient-based pruning beats magnitude pruning on MNIST in accuracy,
precision, training speed and compression. ``summary_table`` answers the four at each
sparsity, for magnitude and for the best member of each gradient-based family, chosen by
**validation** error (never by test error), with the published numbers beside.

The published numbers are data, not code: ``docs/results/published.csv``, read through
``results.published_numbers``. Every table takes them as ``published``; left out (None),
the committed ones are used when the repository's ``docs/results`` is found, and none
otherwise. ``scripts/results_doc.py`` rebuilds the marked tables of ``docs/RESULTS.md``
from these functions, and a test checks that the committed document equals its rebuild.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence

from .report import by_mode
from .results import Published, published_numbers
from .results import results_file as results_file  # where the notebooks import it from

#: Which family each criterion belongs to; a criterion not named here is its own family.
FAMILIES = {
    "magnitude": "magnitude",
    "random": "random",
    "gradient": "first-order gradient",
    "taylor": "first-order gradient",
    "snip": "first-order gradient",
    "fisher": "second-order",
    "obs": "second-order",
    "grasp": "gradient flow",
    "synflow": "gradient flow",
}
#: Families that are not gradient-based: the baseline under test and the floor.
NOT_GRADIENT = ("magnitude", "random")

#: Our run closest to each published method's own protocol: (criterion, mode). Sparse VD
#: learns its sparsity during training, which none of our modes does, so it has no match.
SAME_METHOD = {
    "SNIP": ("snip", "init"),
    "Han et al.": ("magnitude", "iterative"),
    "L-OBS": ("obs", "after"),
}
#: Sparsities of the summary table.
SUMMARY_SPARSITIES = (0.9, 0.95, 0.98)


def _numbers(published: Sequence[Published] | None) -> tuple[Published, ...]:
    """``published``, or the committed numbers when None (none outside a repository)."""
    return published_numbers(required=False) if published is None else tuple(published)


def family(criterion: str) -> str:
    """The family of ``criterion`` (``FAMILIES``; an unknown name is its own family)."""
    return FAMILIES.get(criterion, criterion)


def _mean(members: Sequence[dict], key: str) -> float:
    values = [float(m[key]) for m in members if not math.isnan(float(m[key]))]
    return statistics.fmean(values) if values else math.nan


def _std(members: Sequence[dict], key: str) -> float:
    values = [float(m[key]) for m in members if not math.isnan(float(m[key]))]
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _groups(rows: Sequence[dict], model: str) -> dict[tuple, list[dict]]:
    """Rows of ``model`` by (mode, criterion, sparsity), one member per seed."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        if row["model"] == model:
            groups[(row["mode"], row["criterion"], round(float(row["sparsity"]), 6))].append(row)
    return groups


def choose_on_validation(rows: Sequence[dict], model: str, sparsity: float) -> dict:
    """family → the (mode, criterion) rows of that family with the lowest mean validation
    error at ``sparsity``; families whose rows hold no validation error are left out."""
    best: dict[str, tuple[float, list[dict]]] = {}
    for (mode, criterion, s), members in _groups(rows, model).items():
        if s != round(sparsity, 6) or mode == "dense":
            continue
        error = _mean(members, "validation_error")
        name = family(criterion)
        if not math.isnan(error) and (name not in best or error < best[name][0]):
            best[name] = (error, members)
    return {name: members for name, (_, members) in best.items()}


def _error(members: Sequence[dict]) -> str:
    """Test error as mean ± std over seeds; one seed has no spread, so none is shown."""
    if len(members) < 2:
        return f"{_mean(members, 'test_error'):.2f}"
    return f"{_mean(members, 'test_error'):.2f} ± {_std(members, 'test_error'):.2f}"


def _cells(members: Sequence[dict]) -> list[str]:
    """validation error, test error, precisions, epoch time, bytes, nonzero, seeds."""

    def number(key, fmt):
        value = _mean(members, key)
        return "–" if math.isnan(value) else fmt.format(value)

    return [
        number("validation_error", "{:.2f}"),
        _error(members),
        number("macro_precision", "{:.2%}"),
        number("worst_class_precision", "{:.2%}"),
        number("seconds_per_epoch", "{:.2f}"),
        number("sparse_bytes", "{:,.0f}"),
        number("nonzero_params", "{:,.0f}"),
        str(len(members)),
    ]


def _published_at(model: str, sparsity: float, published: Sequence[Published]) -> list:
    return [p for p in published if p.model == model and abs(p.sparsity - sparsity) < 1e-9]


def _label(members: Sequence[dict]) -> str:
    return f"{members[0]['criterion']}, {members[0]['mode']}"


def _verdict(sparsity: float, chosen: dict, model: str, published: Sequence[Published] = ()) -> str:
    """One sentence: magnitude against the best gradient-based choice, and the anchors."""
    gradient = {n: m for n, m in chosen.items() if n not in NOT_GRADIENT}
    text = f"- **{sparsity:.0%}**: "
    if "magnitude" not in chosen or not gradient:
        text += "magnitude and a gradient-based family are not both in the data."
    else:
        # The best gradient-based entry is chosen on validation error too.
        best = min(gradient.values(), key=lambda m: _mean(m, "validation_error"))
        magnitude = chosen["magnitude"]
        ours, theirs = _mean(best, "test_error"), _mean(magnitude, "test_error")
        spread = max(_std(best, "test_error"), _std(magnitude, "test_error"))
        seeds = min(len(best), len(magnitude))
        pair = (
            f"magnitude ({magnitude[0]['mode']}) {theirs:.2f} against the best gradient-based "
            f"on validation, {best[0]['criterion']} ({best[0]['mode']}) {ours:.2f}"
        )
        if abs(ours - theirs) <= spread:
            text += f"a tie within the seed-to-seed spread (±{spread:.2f}): {pair}."
        else:
            winner = "gradient-based" if ours < theirs else "magnitude"
            text += f"{winner} wins by {abs(ours - theirs):.2f} points of test error: {pair}"
            text += " (one seed: no spread measured)." if seeds < 2 else "."
        for _, _, error, method, protocol, _ in _published_at(model, sparsity, published):
            gap = ours - error
            where = f"{gap:.2f} points above" if gap > 0 else "at or below"
            text += f" Published {method} ({protocol}): {error:g}; ours is {where} it."
    return text


def summary_table(
    rows: Sequence[dict],
    model: str,
    sparsities: Sequence[float] = SUMMARY_SPARSITIES,
    published: Sequence[Published] | None = None,
) -> str:
    """The four questions at each sparsity: magnitude against each gradient-based family.

    Each family's entry is its (mode, criterion) with the lowest mean validation error at
    that sparsity; its test error (mean ± std over seeds) answers accuracy, macro and
    worst-class precision answer precision, seconds per training epoch of the pruned
    network answer speed, and the sparse checkpoint's bytes and the nonzero parameters
    answer compression. One sentence per sparsity says who wins and by how much, and
    how far from the ``published`` numbers (see the module docstring) it is.
    """
    published = _numbers(published)
    header = [
        "sparsity",
        "family",
        "chosen on validation",
        "validation error",
        "test error",
        "macro precision",
        "worst-class precision",
        "s / epoch",
        "checkpoint bytes",
        "nonzero params",
        "seeds",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    dense = _groups(rows, model).get(("dense", "dense", 0.0))
    if dense:
        lines.append("| 0% | dense | – | " + " | ".join(_cells(dense)) + " |")
    verdicts = []
    for sparsity in sparsities:
        chosen = choose_on_validation(rows, model, sparsity)
        order = sorted(chosen, key=lambda n: (n != "magnitude", n in NOT_GRADIENT, n))
        for name in order:
            if name == "random":
                continue
            members = chosen[name]
            cells = [f"{sparsity:.0%}", name, _label(members), *_cells(members)]
            lines.append("| " + " | ".join(cells) + " |")
        if not chosen:
            cells = [f"{sparsity:.0%}", "–", "no rows with a validation error"] + ["–"] * 8
            lines.append("| " + " | ".join(cells) + " |")
        verdicts.append(_verdict(sparsity, chosen, model, published))
    lines += [
        "",
        "Test and validation error in %, mean ± std over seeds; precision of the test "
        "predictions (macro: mean over the 10 classes; worst class: the lowest); seconds per "
        "training epoch of the pruned network (masks held on dense kernels); bytes of the "
        "sparse checkpoint (`gp.save`); nonzero parameters, biases included.",
        "",
        *verdicts,
    ]
    return "\n".join(lines) + "\n"


def published_table(
    rows: Sequence[dict], model: str, published: Sequence[Published] | None = None
) -> str:
    """Each published number for ``model`` beside ours at the same sparsity.

    Ours is the best gradient-based entry and the magnitude entry, each chosen on
    validation error; "not run" where our runs have no row at that sparsity, "no
    validation error" where they have rows but nothing to choose by.
    """
    lines = [
        "| published | protocol | sparsity | published error | ours, best gradient-based "
        "| ours, magnitude | gap (ours − published) |",
        "|---|---|---|---|---|---|---|",
    ]
    for _, sparsity, error, method, protocol, _ in (
        p for p in _numbers(published) if p.model == model
    ):
        chosen = choose_on_validation(rows, model, sparsity)
        gradient = [m for n, m in chosen.items() if n not in NOT_GRADIENT]
        ran = any(abs(float(r["sparsity"]) - sparsity) < 1e-9 for r in rows if r["model"] == model)
        missing = "no validation error" if ran else "not run"
        best = min(gradient, key=lambda m: _mean(m, "validation_error")) if gradient else None
        magnitude = chosen.get("magnitude")
        cells = [
            method,
            protocol,
            f"{sparsity:.1%}",
            f"{error:g}",
            f"{_error(best)} ({_label(best)})" if best else missing,
            f"{_error(magnitude)} ({_label(magnitude)})" if magnitude else missing,
            f"{_mean(best, 'test_error') - error:+.2f}" if best else "–",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def matched_rows(
    rows: Sequence[dict], model: str, published: Sequence[Published] | None = None
) -> list[dict]:
    """Each published number of ``model`` beside our run of the same method (``SAME_METHOD``).

    Returns one dict per published number: ``method``, ``protocol``, ``sparsity``,
    ``published`` (its error, %), ``ours`` ("criterion, mode"; None when the method has
    no counterpart here), ``members`` (our rows, one per seed; empty when not run) and
    ``gap`` (our mean test error − the published one, NaN when not run).
    """
    groups = _groups(rows, model)
    matched = []
    for _, sparsity, error, method, protocol, _ in (
        p for p in _numbers(published) if p.model == model
    ):
        pair = SAME_METHOD.get(method)
        members = groups.get((pair[1], pair[0], round(sparsity, 6)), []) if pair else []
        matched.append(
            {
                "method": method,
                "protocol": protocol,
                "sparsity": sparsity,
                "published": error,
                "ours": f"{pair[0]}, {pair[1]}" if pair else None,
                "members": members,
                "gap": _mean(members, "test_error") - error if members else math.nan,
            }
        )
    return matched


def matched_table(
    rows: Sequence[dict], model: str, published: Sequence[Published] | None = None
) -> str:
    """``matched_rows`` as markdown: the same method at our budget, nothing chosen."""
    lines = [
        "| published | protocol | sparsity | published error | ours, same method "
        "| ours, test error | seeds | gap (ours − published) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in matched_rows(rows, model, published):
        ran = bool(m["members"])
        cells = [
            m["method"],
            m["protocol"],
            f"{m['sparsity']:.1%}",
            f"{m['published']:g}",
            m["ours"] or "no counterpart",
            _error(m["members"]) if ran else ("not run" if m["ours"] else "–"),
            str(len(m["members"])),
            f"{m['gap']:+.2f}" if ran else "–",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def error_table(
    rows: Sequence[dict],
    model: str,
    sparsities: Sequence[float],
    published: Sequence[Published] | None = None,
) -> str:
    """Test error (mean ± std) of every (mode, criterion) of ``model`` at ``sparsities``,
    published numbers first: the full record, nothing chosen."""
    groups = _groups(rows, model)
    columns = [round(s, 6) for s in sparsities]
    header = ["", "dense", *_percent_headers(sparsities)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for cells, values in _published_cells(model, columns, _numbers(published)):
        lines.append("| " + " | ".join(cells + values) + " |")
    dense = groups.get(("dense", "dense", 0.0))
    if dense:
        lines.append("| ours, dense | " + _error(dense) + " |" + " |" * len(columns))
    pairs = sorted(
        {(mode, c) for mode, c, _ in groups if mode != "dense"},
        key=lambda mode_criterion: by_mode(*mode_criterion),
    )
    for mode, criterion in pairs:
        values = [groups.get((mode, criterion, c)) for c in columns]
        if any(values):
            cells = [f"ours, {criterion} ({mode})", ""]
            cells += [_error(v) if v else "–" for v in values]
            lines.append("| " + " | ".join(cells) + " |")
    seeds = max((len(m) for m in groups.values()), default=0)
    lines += ["", f"Test error in %, mean ± std over up to {seeds} seed(s)."]
    return "\n".join(lines) + "\n"


def _percent_headers(sparsities: Sequence[float]) -> list[str]:
    return [f"{s:.1%}".replace(".0%", "%") for s in sparsities]


def _published_cells(
    model: str, columns: Sequence[float], published: Sequence[Published]
) -> list[tuple[list[str], list[str]]]:
    """([label, dense error], [error per column]) of each published method of ``model``
    with a number at one of ``columns`` (sparsities rounded to 6 places)."""
    found = []
    mine = [p for p in published if p.model == model]
    for method, protocol in dict.fromkeys((p.method, p.protocol) for p in mine):
        values = {round(p.sparsity, 6): f"{p.error:g}" for p in mine if p.method == method}
        if any(c in values for c in columns):
            dense_error = next(p.dense_error for p in mine if p.method == method)
            dense_error = None if math.isnan(dense_error) else dense_error
            label = [
                f"**published** {method} ({protocol})",
                f"{dense_error:g}" if dense_error else "",
            ]
            found.append((label, [values.get(c, "–") for c in columns]))
    return found


def runs_table(
    runs: Sequence[tuple[str, Sequence[dict]]],
    model: str,
    sparsities: Sequence[float],
    published: Sequence[Published] | None = None,
) -> str:
    """Test error of several runs side by side, one CSV each, never merged.

    For runs of different protocols (another training recipe or length) that one table
    of merged rows must not mix: each run keeps its own rows. Only the (mode, criterion)
    pairs that every run holds are shown, so that like is compared with like; the
    published numbers at ``sparsities`` come first.

    Args:
        runs: (name, rows) per run, in the order of the table.
        model: the model whose rows are shown.
        sparsities: the columns, as fractions.
    """
    if not runs:
        raise ValueError("runs_table needs at least one (name, rows) run.")
    columns = [round(s, 6) for s in sparsities]
    grouped = [(name, _groups(rows, model)) for name, rows in runs]
    shared = set.intersection(
        *({(mode, c) for mode, c, _ in groups if mode != "dense"} for _, groups in grouped)
    )
    header = ["run", "method", "epochs", "seeds", *_percent_headers(sparsities)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (label, _dense), values in _published_cells(model, columns, _numbers(published)):
        lines.append("| " + " | ".join([label, "", "", ""] + values) + " |")
    for mode, criterion in sorted(shared, key=lambda mode_criterion: by_mode(*mode_criterion)):
        for name, groups in grouped:
            members = [groups.get((mode, criterion, c), []) for c in columns]
            present = [m for m in members if m]
            if not present:
                continue
            epochs = sorted({int(float(r["train_epochs"])) for m in present for r in m})
            seeds = sorted({len(m) for m in present})
            cells = [name, f"{criterion}, {mode}", "/".join(map(str, epochs))]
            cells += ["/".join(map(str, seeds))] + [_error(m) if m else "–" for m in members]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Test error in %, mean ± std over the seeds; epochs: training epochs in all."]
    return "\n".join(lines) + "\n"


def summary_markdown(rows: Sequence[dict], published: Sequence[Published] | None = None) -> str:
    """``summary_table`` and ``published_table`` of every model in ``rows``."""
    published = _numbers(published)
    parts = []
    for model in dict.fromkeys(row["model"] for row in rows):
        parts += [
            f"## {model}",
            "",
            summary_table(rows, model, published=published),
            published_table(rows, model, published),
        ]
    return "\n".join(parts)
