"""Output layer ``output_toxicity``: block an abusive answer (the layer-2 toxicity head)."""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

from nodes.guards.base import Action, GuardContext, GuardResult, register_guard
from nodes.guards.output._common import _result

__all__ = ["OutputToxicity"]


@register_guard("output_toxicity")
class OutputToxicity:
    """Block an answer the toxicity head scores at or above the block threshold."""

    name: ClassVar[str]

    def __init__(
        self,
        *,
        block_threshold: float | None = None,
        escalate_threshold: float | None = None,
        model_dir: str | None = None,
    ) -> None:
        """Configure the layer.

        Args:
            block_threshold: Score at or above which the answer is blocked; default: the
                toxicity head's own block threshold.
            escalate_threshold: Optional lower score that escalates instead; off by default.
            model_dir: Classifier artefact directory (tests).
        """
        self.block_threshold = block_threshold
        self.escalate_threshold = escalate_threshold
        self.model_dir = model_dir
        self._clf: Any = None

    def _classifier(self) -> Any:
        if self._clf is None:
            classifiers = importlib.import_module("nodes.guards.classifiers")
            kwargs = {"model_dir": self.model_dir} if self.model_dir else {}
            self._clf = classifiers.load_classifier("toxicity", **kwargs)
        return self._clf

    def check(self, text: str, ctx: GuardContext | None = None) -> GuardResult:
        """Score the answer and BLOCK (or ESCALATE) above the thresholds."""
        clf = self._classifier()
        score = float(clf.score(text))
        block = self.block_threshold
        if block is None:
            thresholds = getattr(clf, "thresholds", None)
            block = float(getattr(thresholds, "block", 0.8))
        scores = {"toxicity": score}
        if score >= block:
            return _result(Action.BLOCK, self.name, "toxicity", scores=scores)
        if self.escalate_threshold is not None and score >= self.escalate_threshold:
            return _result(Action.ESCALATE, self.name, "uncertain:toxicity", scores=scores)
        return _result(Action.ALLOW, self.name, scores=scores)
