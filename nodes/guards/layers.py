"""Import every built-in guard layer so it registers itself by name.

``prefilter`` (layer 1), ``classifiers`` (layer 2), ``pii`` (layer 3), ``safety``
(layer 4), and from :mod:`nodes.guards.output` the output layers ``output_pii``,
``output_toxicity``, ``schema``, ``sanitize``, ``url_allowlist`` and the tool-result layer
``tool_result_injection``. Heavy models load lazily inside the layers, so importing this
module is cheap.
"""

from nodes.guards import classifiers, encoder, output, pii, prefilter, safety  # noqa: F401

__all__: list[str] = []
