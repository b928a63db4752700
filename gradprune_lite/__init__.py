"""gradprune-lite: learn and measure gradient-based pruning.

import gradprune_lite as gp
scores = gp.score(model, "taylor", batches)        # dict name -> tensor, higher = keep
masks = gp.global_masks(scores, sparsity=0.9)      # dict name -> bool tensor
gp.apply_masks(model, masks)                       # pruned weights stay exactly zero
"""

import importlib

from ._version import __version__ as __version__
from .core.cost import model_cost
from .core.criteria import CRITERIA, ScoringContext, register_criterion, score
from .core.gradual import GradualPruner, gradual_sparsity
from .core.interop import from_torch_prune, to_torch_prune
from .core.io import checkpoint_sizes, load, save
from .core.layers import PRUNABLE_TYPES, prunable_weights
from .core.masks import (
    apply_masks,
    current_masks,
    enforce_masks,
    hold_masks,
    load_state_dict,
    mask_overlap,
    remove_masks,
    sparsity,
    sparsity_report,
)
from .core.movement import MovementScores
from .core.prune import prune, sparsity_schedule
from .core.selection import global_masks, kth_smallest, layerwise_masks
from .core.sparse import to_sparse
from .core.stability import RankingStability, mean_interval, ranking_stability
from .core.stats import GradientStats, gradient_stats, per_sample_gradients
from .core.structure import GROUP_CRITERIA, register_group_criterion, structured_prune

#: Public names of the layers above the core, loaded on first use (``__getattr__``), so
#: that ``import gradprune_lite`` pays for neither matplotlib, tqdm nor the MNIST code:
#: name → (module, attribute), attribute None for the module itself.
_LAZY = {
    "checks": ("gradprune_lite.course.checks", None),
    "plots": ("gradprune_lite.course.plots", None),
    "ranking": ("gradprune_lite.course.ranking", None),
    "widgets": ("gradprune_lite.course.widgets", None),
    "models": ("gradprune_lite.experiment.models", None),
    "run_comparison": ("gradprune_lite.experiment.comparison", "run_comparison"),
    "write_outputs": ("gradprune_lite.experiment.report", "write_outputs"),
    "Digits": ("gradprune_lite.experiment.data", "Digits"),
    "mnist": ("gradprune_lite.experiment.data", "mnist"),
    "Evaluation": ("gradprune_lite.experiment.evaluate", "Evaluation"),
    "evaluate": ("gradprune_lite.experiment.evaluate", "evaluate"),
    "splits": ("gradprune_lite.experiment.reference", "splits"),
    "trained": ("gradprune_lite.experiment.reference", "trained"),
    "summary_table": ("gradprune_lite.experiment.summary", "summary_table"),
    "fit": ("gradprune_lite.experiment.train", "fit"),
}
#: Subpackages reachable as attributes (``gp.experiment``) without an import statement.
_SUBPACKAGES = ("core", "course", "experiment", "cli")


def __getattr__(name: str):
    if name in _LAZY:
        module_name, attribute = _LAZY[name]
        module = importlib.import_module(module_name)
        value = module if attribute is None else getattr(module, attribute)
        globals()[name] = value  # later look-ups skip this function
        return value
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "CRITERIA",
    "GROUP_CRITERIA",
    "PRUNABLE_TYPES",
    "Digits",
    "Evaluation",
    "GradientStats",
    "GradualPruner",
    "MovementScores",
    "RankingStability",
    "ScoringContext",
    "apply_masks",
    "checkpoint_sizes",
    "checks",
    "plots",
    "ranking",
    "ranking_stability",
    "mean_interval",
    "widgets",
    "current_masks",
    "enforce_masks",
    "evaluate",
    "fit",
    "from_torch_prune",
    "global_masks",
    "gradient_stats",
    "gradual_sparsity",
    "hold_masks",
    "kth_smallest",
    "layerwise_masks",
    "load",
    "load_state_dict",
    "mask_overlap",
    "mnist",
    "model_cost",
    "models",
    "per_sample_gradients",
    "prunable_weights",
    "prune",
    "register_criterion",
    "register_group_criterion",
    "remove_masks",
    "run_comparison",
    "save",
    "score",
    "sparsity",
    "sparsity_report",
    "sparsity_schedule",
    "structured_prune",
    "splits",
    "to_sparse",
    "summary_table",
    "to_torch_prune",
    "trained",
    "write_outputs",
]
