"""The release, in one place: ``gp.__version__`` and the results' run keys read it, and a
test checks that ``pyproject.toml`` says the same (tests/test_architecture.py)."""

__version__ = "0.2.0"
