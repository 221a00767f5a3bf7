"""Layer 5: the output guard, and the scan of text coming back from tools.

One module per layer; importing this package registers them all by name.

Output layers (run on the model's answer, in the policy's order):

* ``output_pii``: mask PII in the answer; values the user gave in this thread (present in
  the thread's vault) are restored, everything else is redacted;
* ``output_toxicity``: block an abusive answer (the layer-2 toxicity head);
* ``schema``: validate a JSON answer against the policy's JSON schema;
* ``sanitize``: nh3 HTML sanitising with a small tag allow-list, and removal of
  ``javascript:``/``data:``/``vbscript:`` markdown links;
* ``url_allowlist``: every http(s) link must point to an allow-listed host or one of its
  subdomains; others become ``[link removed]``.

Tool results: ``tool_result_injection`` scans reservation notes, e-mails and other third-party
text with the layer-1 blocklist (after the same normalisation) and the injection classifier,
and neutralises what looks like instructions (MODIFY) or blocks, per policy.

Every regular expression here uses bounded, non-nested quantifiers.
"""

from nodes.guards.output.output_pii import OutputPii
from nodes.guards.output.output_toxicity import OutputToxicity
from nodes.guards.output.sanitize import DEFAULT_ALLOWED_TAGS, SanitizeGuard
from nodes.guards.output.schema import SchemaGuard, validate_json_schema
from nodes.guards.output.tool_result_injection import ToolResultInjection
from nodes.guards.output.url_allowlist import UrlAllowlist, host_allowed

__all__ = [
    "DEFAULT_ALLOWED_TAGS",
    "OutputPii",
    "OutputToxicity",
    "SanitizeGuard",
    "SchemaGuard",
    "ToolResultInjection",
    "UrlAllowlist",
    "host_allowed",
    "validate_json_schema",
]
