"""gradprune-lite: learn and measure gradient-based pruning.

import gradprune_lite as gp
scores = gp.score(model, "taylor", batches)        # dict name -> tensor, higher = keep
masks = gp.global_masks(scores, sparsity=0.9)      # dict name -> bool tensor
gp.apply_masks(model, masks, optimizer)            # pruned weights stay exactly zero
"""

from .core.cost import model_cost
from .core.criteria import CRITERIA, ScoringContext, register_criterion, score
from .core.interop import from_torch_prune, to_torch_prune
from .core.io import checkpoint_sizes, load, save
from .core.layers import PRUNABLE_TYPES, prunable_weights
from .core.masks import (
    apply_masks,
    current_masks,
    enforce_masks,
    hold_masks,
    mask_overlap,
    remove_masks,
    sparsity,
    sparsity_report,
)
from .core.prune import prune, sparsity_schedule
from .core.second_order import obs_scores as _registers_obs  # noqa: F401  ("obs" criterion)
from .core.selection import global_masks, kth_smallest, layerwise_masks
from .core.sparse import to_sparse
from .core.stability import RankingStability, ranking_stability
from .core.stats import GradientStats, gradient_stats, per_sample_gradients
from .core.structure import GROUP_CRITERIA, register_group_criterion, structured_prune
from .course import checks, plots, ranking, widgets
from .experiment import models
from .experiment.comparison import run_comparison, write_outputs
from .experiment.data import Digits, mnist
from .experiment.evaluate import Evaluation, evaluate
from .experiment.reference import splits, trained
from .experiment.summary import summary_table
from .experiment.train import fit

__version__ = "0.1.0"

__all__ = [
    "CRITERIA",
    "GROUP_CRITERIA",
    "PRUNABLE_TYPES",
    "Digits",
    "Evaluation",
    "GradientStats",
    "RankingStability",
    "ScoringContext",
    "apply_masks",
    "checkpoint_sizes",
    "checks",
    "plots",
    "ranking",
    "ranking_stability",
    "widgets",
    "current_masks",
    "enforce_masks",
    "evaluate",
    "fit",
    "from_torch_prune",
    "global_masks",
    "gradient_stats",
    "hold_masks",
    "kth_smallest",
    "layerwise_masks",
    "load",
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
