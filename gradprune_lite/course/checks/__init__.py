"""Self-checks for the coursework exercises in ``notebooks/exercises/`` (one module each).

Each ``check_*`` runs the student's function on small inputs, compares the result with an
independent reference (the library's implementation, ``torch.func``, or a closed form
written in the check) and raises ``CheckFailed`` (an ``AssertionError``) with one short line
naming the likely mistake. In Jupyter only that line is shown, not the frames of this
package. A check returns True when everything holds, so a notebook cell can end with it.
"""

from ._common import CheckFailed
from .channel import check_channel_importance, check_remove_conv1_channel
from .design import check_design_steps, check_design_to_target
from .largest_sparsity import check_largest_sparsity
from .lottery import check_fair_control, check_retrain, check_rewind
from .mask_hook import check_mask_hook
from .movement import check_cubic_sparsity, check_fine_prune, check_movement_masks
from .obs import check_damped_fisher, check_fc3_per_sample_gradients, check_obs_prune
from .per_sample import check_linear_gradient_stats
from .sensitivity import check_choose_layer_sparsities, check_sensitivity_scan
from .stability import check_disjoint_draws, check_jaccard, check_mean_interval
from .taylor import check_taylor_score
from .threshold import check_global_threshold

__all__ = [
    "CheckFailed",
    "check_channel_importance",
    "check_choose_layer_sparsities",
    "check_cubic_sparsity",
    "check_damped_fisher",
    "check_design_steps",
    "check_design_to_target",
    "check_disjoint_draws",
    "check_fair_control",
    "check_fc3_per_sample_gradients",
    "check_fine_prune",
    "check_global_threshold",
    "check_jaccard",
    "check_largest_sparsity",
    "check_linear_gradient_stats",
    "check_mask_hook",
    "check_mean_interval",
    "check_movement_masks",
    "check_obs_prune",
    "check_remove_conv1_channel",
    "check_retrain",
    "check_rewind",
    "check_sensitivity_scan",
    "check_taylor_score",
]
