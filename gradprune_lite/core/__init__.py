"""The pruning core: gradient statistics → criteria → selection → masks → pruning.

Data flows one way through these files, each with one job:

* ``layers``    which parameters are prunable, keyed by name;
* ``stats``     the gradient decomposition (mean, E[g²], variance of per-sample gradients);
* ``criteria``  importance scores read off the decomposition (higher = keep);
* ``selection`` the exact k-th value by selection (never a full sort) and masks from it;
* ``masks``     bool masks that keep pruned weights at exactly zero through training;
* ``prune``     the score → mask → (train) loop, one-shot or iterative;
* ``interop``   conversion to and from ``torch.nn.utils.prune``.

Nothing here knows about MNIST or notebooks.
"""
