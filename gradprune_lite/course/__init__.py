"""Course helpers used by the notebooks and exercises: widgets, self-checks, plots, ranking.

These are thin layers over the pruning core and the MNIST experiment; no notebook holds
logic that a test cannot reach through here.
"""
