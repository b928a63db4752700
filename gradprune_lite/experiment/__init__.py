"""The MNIST experiment: data → models → training → evaluation → comparison → checkpoints.

Everything the article's evaluation needs, built on the pruning core (``..core``):
real MNIST loading (``data``), LeNet-300-100 and LeNet-5 (``models``), a training loop that
respects masks (``train``), accuracy and per-class precision (``evaluate``), the criteria
sweep behind ``gradprune-lite compare`` (``comparison``) and sparse checkpoints
(``checkpoint``).
"""
