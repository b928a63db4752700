"""One record per criterion: options with defaults, the weight-update and state hooks."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import gradprune_lite as gp
from gradprune_lite.core.registry import NO_DEFAULT, Criterion


def test_every_built_in_has_a_record_with_what_it_needs():
    records = {r.name: r for r in gp.CRITERIA.records()}
    assert list(records) == list(gp.CRITERIA)
    assert {n for n, r in records.items() if not r.needs_data} == {"random", "magnitude", "synflow"}
    assert [n for n, r in records.items() if r.weight_update] == ["obs"]
    assert records["grasp"].options["temperature"] == 200.0
    assert records["obs"].options["block_size"] == 64
    with pytest.raises(TypeError):
        records["random"].options["seed"] = 1  # defaults are read-only


def test_obs_is_registered_by_the_criteria_module_itself():
    code = "import gradprune_lite.core.criteria as c; print(c.CRITERIA.record('obs').name)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "obs", result.stderr


def test_score_fills_in_declared_defaults_only(mlp):
    seen = []

    def record_options(ctx):
        seen.append(dict(ctx.options))
        return {name: w.abs() for name, w in ctx.weights.items()}

    gp.register_criterion("test_defaults", record_options, options={"alpha": 0.5, "beta": None})
    gp.register_criterion("test_names", record_options, options=("alpha",))
    try:
        gp.score(mlp, "test_defaults", beta=3)
        gp.score(mlp, "test_names")
        assert seen == [{"alpha": 0.5, "beta": 3}, {}]
        assert gp.CRITERIA.record("test_names").options["alpha"] is NO_DEFAULT
    finally:
        del gp.CRITERIA["test_defaults"], gp.CRITERIA["test_names"]


def test_prune_rejects_an_unknown_option_before_changing_the_model(mlp):
    before = {k: v.clone() for k, v in mlp.state_dict().items()}
    with pytest.raises(ValueError, match=r"'magnitude' does not take the option\(s\) \['seed'\]"):
        gp.prune(mlp, "magnitude", 0.5, seed=1)
    assert gp.current_masks(mlp) == {}
    assert all(torch.equal(v, before[k]) for k, v in mlp.state_dict().items())


class CountingState:
    """A toy state: counts the rounds that read it, and whether it was closed."""

    made: list[CountingState] = []

    def __init__(self, model):
        self.rounds, self.closed = 0, False
        CountingState.made.append(self)

    def close(self):
        self.closed = True


def test_a_stateful_criterion_keeps_one_state_through_every_round_of_prune(mlp):
    CountingState.made.clear()

    def counting(ctx):
        ctx.state.rounds += 1
        return {name: w.abs() for name, w in ctx.weights.items()}

    gp.register_criterion("test_counting", counting, options={}, make_state=CountingState)
    try:
        gp.prune(mlp, "test_counting", 0.9, rounds=3)
        (state,) = CountingState.made
        assert state.rounds == 3 and state.closed
        gp.score(mlp, "test_counting")  # a fresh state per score call, closed after it
        assert len(CountingState.made) == 2 and CountingState.made[1].closed

        def fail(model, round_index):
            raise RuntimeError("training failed")

        with pytest.raises(RuntimeError, match="training failed"):
            gp.prune(mlp, "test_counting", 0.95, rounds=2, between=fail)
        assert CountingState.made[2].closed  # closed on the error too
    finally:
        del gp.CRITERIA["test_counting"]


def test_group_criteria_follow_the_same_pattern():
    record = gp.GROUP_CRITERIA.record("magnitude")
    assert isinstance(record, Criterion) and not record.needs_data
    assert gp.GROUP_CRITERIA.record("taylor").needs_data
    with pytest.raises(ValueError, match="unknown group criterion 'nope'.*register_group"):
        gp.GROUP_CRITERIA.record("nope")
    with pytest.raises(ValueError, match="options must be a collection of names"):
        gp.register_group_criterion("bad", lambda ctx: {}, options="seed")
