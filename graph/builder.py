"""Wire the graph. Only wiring lives here; the nodes are in ``nodes/``."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from langgraph.graph import END, START, StateGraph
from langgraph.types import Checkpointer

from graph.context import AirlockContext
from graph.state import AirlockState, InputState
from nodes.agent import CallModel, route_after_model
from nodes.input_guard import InputGuard, respond_refusal_factory, route_after_input
from nodes.output_guard import OutputGuard
from nodes.tool_guard import ToolGuard

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langgraph.graph.state import CompiledStateGraph

    from graph.runtime import AirlockServices

__all__ = ["build_graph"]


def build_graph(
    *,
    services: AirlockServices,
    model: BaseChatModel | None = None,
    checkpointer: Checkpointer = None,
    name: str = "airlock",
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Compile the airlock graph.

    Args:
        services: Pool, policy, domain, audit, guard pipelines (see ``graph.runtime``).
        model: The chat model; defaults to the one the services were configured with.
        checkpointer: A saver (Postgres in production). ``langgraph dev`` supplies its own.
        name: The graph's name.
    """
    chat_model = model if model is not None else services.model
    policy = services.policy
    # Node objects are callables with (state, config, runtime) signatures; typed as Any
    # because StateGraph's overloads only describe plain functions.
    nodes: dict[str, Any] = {
        "guard_input": InputGuard(
            pipeline=services.input_pipeline, audit=services.audit,
            uncertain_action=policy.guards.uncertain_action, vault_for=services.vault_for,
            review_uncertain=services.review_uncertain,
        ),
        "respond_refusal": respond_refusal_factory(policy.guards.refusal_message),
        "call_model": CallModel(
            model=chat_model, tools=services.domain.model_tools(),
            outcomes=services.outcomes, scan_result=services.scan_tool_result,
        ),
        "guard_tool_call": ToolGuard(
            policy=policy, domain=services.domain, audit=services.audit,
            idempotency=services.idempotency, breakers=services.breakers, redact=services.redact,
            reviewer=services.reviewer, scan_result=services.scan_tool_result,
            resolve=(
                partial(services.resolve_placeholders, fields=services.domain.pii_fields)
                if services.vault_store is not None else None
            ),
            model_sees_masked_data=services.model_sees_masked_data, outcomes=services.outcomes,
        ),
        "guard_output": OutputGuard(
            pipeline=services.output_pipeline, audit=services.audit, vault_for=services.vault_for
        ),
    }
    builder = StateGraph(AirlockState, context_schema=AirlockContext, input_schema=InputState)
    for node_name, node in nodes.items():
        builder.add_node(node_name, node)
    builder.add_edge(START, "guard_input")
    builder.add_conditional_edges("guard_input", route_after_input, ["respond_refusal", "call_model"])
    builder.add_edge("respond_refusal", END)
    builder.add_conditional_edges("call_model", route_after_model, ["guard_tool_call", "guard_output"])
    builder.add_edge("guard_tool_call", "call_model")
    builder.add_edge("guard_output", END)
    return builder.compile(checkpointer=checkpointer, name=name)
