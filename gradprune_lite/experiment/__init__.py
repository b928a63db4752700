"""The MNIST experiment: data → models → training → evaluation → comparison → reports.

Everything the article's evaluation needs, built on the pruning core (``..core``):
real MNIST loading (``data``), LeNet-300-100 and LeNet-5 (``models``), a training loop that
respects masks (``train``), accuracy and per-class precision (``evaluate``), dense
references (``reference``), the criteria sweep behind ``gradprune-lite compare``
(``comparison``), its results log (``rows``), its reports (``report``, ``summary``),
the reader of the committed results (``results``) and notebook 04's sweep (``sweep``).
"""

# The sparse checkpoint format lives in the core now (``core/io.py``); the old module name
# ``gradprune_lite.experiment.checkpoint`` stays importable as an attribute.
from ..core import io as checkpoint  # noqa: F401
