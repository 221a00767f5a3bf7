"""Warm a guard pipeline at start-up so the first customer message pays no load cost.

Layers load their models lazily (Presidio and the spaCy pipelines on the first analysis, the
classifier featurisers and regex caches on the first text, the safety client on the first
request). :func:`warm_pipeline` makes each layer do that work before the application (or
``airlock scan``) accepts a message: a layer's own ``warm_up()`` hook if it has one, then a
few representative texts through its ``check`` (several languages, PII of every kind, a JSON
record). A resolver that only runs for uncertain messages (the layer-4 safety endpoint) is
never *called* at start-up: only its hook runs (it opens its connection pool, no request).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nodes.guards.base import Direction, GuardContext

__all__ = ["WARM_TEXTS", "WarmReport", "warm_pipeline"]

log = logging.getLogger(__name__)

#: Made-up texts that reach every lazy path: names, e-mail, phone, date of birth, booking
#: code, the languages customers write in, and a structured record as tools return them.
WARM_TEXTS = (
    "Hi, this is Jane Doe (jane.doe@example.com, +1 415 555 0134, born 1980-04-02). "
    "Please add a checked bag to reservation ABC123 and pay with my card.",
    "Hola, soy María García; quiero cambiar mi vuelo del viernes a Madrid.",
    "Bonjour, je suis Jean Dupont et je voudrais annuler ma réservation.",
    "Hallo, ich bin Hans Müller und möchte einen Koffer hinzufügen.",
    "Ciao, sono Giulia Rossi: posso cambiare il mio posto?",
    "Olá, sou o João Silva e quero um reembolso.",
    '{"first_name": "Jane", "last_name": "Doe", "email": "jane.doe@example.com", '
    '"dob": "1980-04-02", "reservation_id": "ABC123"}',
)


@dataclass(frozen=True, kw_only=True)
class WarmReport:
    """What warming one pipeline did.

    Attributes:
        layers: Names of the layers warmed, in order.
        ms: Wall time of the warm-up.
        errors: Layer name to the error type of a layer whose warm-up failed (it is then
            handled per message as configured: fail-safe BLOCK, or ALLOW if fail-open).
    """

    layers: tuple[str, ...]
    ms: float
    errors: Mapping[str, str] = field(default_factory=dict)

    @property
    def loaded(self) -> bool:
        """Return True when every layer warmed without an error."""
        return not self.errors


def warm_pipeline(pipeline: Any, *, direction: Direction = "input") -> WarmReport:
    """Load every model ``pipeline``'s layers use, now.

    Args:
        pipeline: A :class:`nodes.guards.pipeline.GuardPipeline` (anything with ``specs``
            and ``guards`` in the same order).
        direction: The stream the pipeline guards (its layers may branch on it).

    Returns:
        The report; errors are logged and reported, not raised (the pipeline still answers
        every message by its fail-safe rules).
    """
    from nodes.guards.vault import InMemoryVault

    started = time.perf_counter()
    ctx = GuardContext(direction=direction, thread_id="warm-up", vault=InMemoryVault(thread_id="warm-up"))
    warmed: list[str] = []
    errors: dict[str, str] = {}
    for spec, guard in zip(pipeline.specs, pipeline.guards, strict=True):
        try:
            hook = getattr(guard, "warm_up", None)
            if callable(hook):
                hook()
            if not spec.only_if_escalated:
                for text in WARM_TEXTS:
                    guard.check(text, ctx)
            warmed.append(spec.name)
        except Exception as exc:  # noqa: BLE001 - reported; messages are handled fail-safe
            errors[spec.name] = type(exc).__name__
            log.warning("warm-up of guard layer %s failed: %s", spec.name, type(exc).__name__)
    return WarmReport(layers=tuple(warmed), ms=(time.perf_counter() - started) * 1000.0, errors=errors)
