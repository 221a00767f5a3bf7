"""The guard pipeline: one class per layer behind :class:`nodes.guards.base.Guard`.

Layers register themselves with ``@register_guard("name")``; :mod:`nodes.guards.layers`
imports the built-in ones. :class:`nodes.guards.pipeline.GuardPipeline` runs an ordered
list of :class:`nodes.guards.pipeline.LayerSpec` entries (from the policy file). This
package module stays light: importing it loads no layer and no model.
"""

__all__: list[str] = []
