"""Training scripts, evaluation suites and reports for airlock (``python -m evals.<name>``).

The public surface is the runnable modules listed in ``__all__``; each is started with
``python -m evals.<name>`` and none is imported here (they load models and data).
"""

__all__ = [
    "bench",
    "bench_api",
    "bench_turn",
    "fuzz",
    "heldout",
    "pii_eval",
    "pii_long",
    "quality",
    "tau2_airline",
    "tau2_replay",
    "train_classifiers",
    "train_encoder",
    "uncertain_band",
]
