"""The pruning core: gradient statistics → criteria → selection → masks → pruning.

Data flows one way through these files, each with one job:

* ``layers``    which parameters are prunable, keyed by name;
* ``stats``     the gradient decomposition (mean, E[g²], variance of per-sample gradients);
* ``registry``  what a criterion is: one ``Criterion`` record each, and their table;
* ``criteria``  importance scores read off the decomposition (higher = keep), registered;
* ``selection`` the exact k-th value by selection (never a full sort) and masks from it;
* ``masks``     bool masks that keep pruned weights at exactly zero through training;
* ``prune``     the score → mask → (train) loop, one-shot or iterative;
* ``gradual``   ``GradualPruner``: sparsity raised along a schedule inside any training loop;
* ``movement``  movement pruning (−Σ w·g over training steps) and its accumulator;
* ``second_order`` OBS: saliency and weight update from the block-diagonal empirical Fisher;
* ``structure`` structured pruning: whole neurons/channels removed (a smaller dense model);
* ``sparse``    CSR execution of masked Linear layers;
* ``io``        the sparse checkpoint format (``gp.save`` / ``gp.load``);
* ``cost``      parameters, MACs and checkpoint bytes of a model;
* ``stability`` how much a ranking changes between disjoint draws of data;
* ``interop``   conversion to and from ``torch.nn.utils.prune``.

Private helpers (``_recording``, ``_func_fallback``, ``_scoring``, ``_snapshot``,
``_validate``, ``_band_kernel``, ``_hold``) keep the public files short: exactness checks of
the fast statistics path, the torch.func fallback, side-effect-free scoring, atomic
rollback, input checks, the compiled selection sweep, and the hooks that hold masks on the
parameters through any optimiser.

Nothing here knows about MNIST or notebooks: no module here imports ``experiment``,
``course`` or ``cli`` (``tests/test_architecture.py``; map in ``docs/ARCHITECTURE.md``).
"""
