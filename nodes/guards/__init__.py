"""The guard pipeline: one class per layer behind :class:`nodes.guards.base.Guard`.

Layers register themselves with ``@register_guard("name")``; :mod:`nodes.guards.layers`
imports the built-in ones. :class:`nodes.guards.pipeline.GuardPipeline` runs an ordered
list of :class:`nodes.guards.pipeline.LayerSpec` entries (from the policy file). This
package module stays light: importing it loads no layer and no model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from graph.lazy import lazy_exports

if TYPE_CHECKING:
    from nodes.guards.base import (
        Action,
        Direction,
        Guard,
        GuardContext,
        GuardParamsError,
        GuardResult,
        UnknownGuardError,
        create_guard,
        register_guard,
        registered_guards,
    )
    from nodes.guards.pipeline import (
        GuardPipeline,
        LayerSpec,
        PipelineResult,
        default_input_layers,
        default_output_layers,
        default_tool_result_layers,
        layer_specs,
    )
    from nodes.guards.vault import InMemoryVault, PiiVault, Vault, VaultError, VaultStore, load_vault_key
    from nodes.guards.warmup import WarmReport, warm_pipeline

__all__ = [
    "Action",
    "Direction",
    "Guard",
    "GuardContext",
    "GuardParamsError",
    "GuardPipeline",
    "GuardResult",
    "InMemoryVault",
    "LayerSpec",
    "PiiVault",
    "PipelineResult",
    "UnknownGuardError",
    "Vault",
    "VaultError",
    "VaultStore",
    "WarmReport",
    "create_guard",
    "default_input_layers",
    "default_output_layers",
    "default_tool_result_layers",
    "layer_specs",
    "load_vault_key",
    "register_guard",
    "registered_guards",
    "warm_pipeline",
]

# Loaded on first use (PEP 562), so importing the package stays cheap and free of cycles.
_EXPORTS = {
    "Action": "nodes.guards.base",
    "Direction": "nodes.guards.base",
    "Guard": "nodes.guards.base",
    "GuardContext": "nodes.guards.base",
    "GuardParamsError": "nodes.guards.base",
    "GuardPipeline": "nodes.guards.pipeline",
    "GuardResult": "nodes.guards.base",
    "InMemoryVault": "nodes.guards.vault",
    "LayerSpec": "nodes.guards.pipeline",
    "PiiVault": "nodes.guards.vault",
    "PipelineResult": "nodes.guards.pipeline",
    "UnknownGuardError": "nodes.guards.base",
    "Vault": "nodes.guards.vault",
    "VaultError": "nodes.guards.vault",
    "VaultStore": "nodes.guards.vault",
    "WarmReport": "nodes.guards.warmup",
    "create_guard": "nodes.guards.base",
    "default_input_layers": "nodes.guards.pipeline",
    "default_output_layers": "nodes.guards.pipeline",
    "default_tool_result_layers": "nodes.guards.pipeline",
    "layer_specs": "nodes.guards.pipeline",
    "load_vault_key": "nodes.guards.vault",
    "register_guard": "nodes.guards.base",
    "registered_guards": "nodes.guards.base",
    "warm_pipeline": "nodes.guards.warmup",
}


__getattr__ = lazy_exports(__name__, _EXPORTS)
