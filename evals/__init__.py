"""Training scripts, evaluation suites and reports for airlock (``python -m evals.<name>``)."""

__all__: list[str] = []
