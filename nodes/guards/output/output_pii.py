"""Output layer ``output_pii``: mask PII in the answer, restoring the user's own values."""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from nodes.guards.base import Action, GuardContext, GuardResult, register_guard
from nodes.guards.output._common import _PLACEHOLDER, _result

__all__ = ["OutputPii"]


def _masked_text(result: Any) -> str:
    """Accept the masked text however ``mask_text`` returns it (str, tuple, object)."""
    if isinstance(result, str):
        return result
    if isinstance(result, tuple) and result and isinstance(result[0], str):
        return result[0]
    text = getattr(result, "text", None)
    if isinstance(text, str):
        return text
    raise TypeError("mask_text returned an unexpected type")


@register_guard("output_pii")
class OutputPii:
    """Mask PII in the answer, restoring only the values the user gave in this thread.

    The answer is masked into a scratch vault (so nothing the model wrote enters the
    thread's vault). Each value found is then compared, normalised, with the values the
    thread's vault holds: the user's own are put back, others are redacted as
    ``[EMAIL_ADDRESS]``. Placeholders the model echoed from its (masked) input are resolved
    from the thread's vault. With ``restore_user_values=False`` nothing is restored.
    """

    name: ClassVar[str]

    def __init__(
        self,
        *,
        restore_user_values: bool = True,
        redaction: str = "[{entity_type}]",
        mask_params: Mapping[str, Any] | None = None,
    ) -> None:
        """Configure the layer.

        Args:
            restore_user_values: Put back values present in the thread's vault.
            redaction: Replacement for other values; ``{entity_type}`` is filled in.
            mask_params: Extra keyword arguments for ``nodes.guards.pii.mask_text``.
        """
        self.restore_user_values = restore_user_values
        self.redaction = redaction
        self.mask_params = dict(mask_params or {})

    def check(self, text: str, ctx: GuardContext | None = None) -> GuardResult:
        """Mask PII in ``text`` and return MODIFY when anything changed."""
        pii = importlib.import_module("nodes.guards.pii")
        from nodes.guards.vault import InMemoryVault, normalize_value

        thread_vault = ctx.vault if ctx is not None else None
        # Protect placeholders the model echoed so the analyzer never sees them as text.
        echoed: list[str] = []

        def stash(match: re.Match[str]) -> str:
            echoed.append(match.group(0))
            return f"\ue000{len(echoed) - 1}\ue001"

        text_in = text.replace("\ue000", "").replace("\ue001", "")
        protected = _PLACEHOLDER.sub(stash, text_in) if "<" in text_in else text_in
        scratch = InMemoryVault(thread_id="output-scan")
        masked = _masked_text(pii.mask_text(protected, scratch, **self.mask_params))
        found = scratch.entries()
        user_values: dict[str, set[str]] = {}
        if self.restore_user_values and thread_vault is not None and found:
            wanted_types = {etype for _, etype in found}
            for placeholder, etype in thread_vault.entries():
                if etype in wanted_types:
                    value = thread_vault.get(placeholder)
                    if value is not None:
                        user_values.setdefault(etype, set()).add(normalize_value(etype, value))
        restored = redacted = 0
        replacements: dict[str, str] = {}
        for placeholder, etype in found:
            value = scratch.get(placeholder)
            if value is not None and normalize_value(etype, value) in user_values.get(etype, ()):
                replacements[placeholder] = value
                restored += 1
            else:
                replacements[placeholder] = self.redaction.format(entity_type=etype)
                redacted += 1
        out = _PLACEHOLDER.sub(lambda m: replacements.get(m.group(0), m.group(0)), masked)
        if echoed:
            values: Mapping[str, str] = {}
            if self.restore_user_values and thread_vault is not None:
                values = {p: v for p in set(echoed) if (v := thread_vault.get(p)) is not None}
            restored += sum(1 for p in echoed if p in values)
            out = re.sub(
                "\ue000([0-9]{1,6})\ue001",
                lambda m: values.get(echoed[int(m.group(1))], echoed[int(m.group(1))]),
                out,
            )
        metadata = {"redacted": redacted, "restored": restored,
                    "entity_types": sorted({etype for _, etype in found})}
        if out == text:
            return _result(Action.ALLOW, self.name, metadata=metadata)
        reason = "pii_redacted" if redacted else "pii_restored"
        return _result(Action.MODIFY, self.name, reason, text=out, metadata=metadata)
