"""Wire the graph. Only wiring lives here; the nodes are in ``nodes/``."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Checkpointer

from graph.context import AirlockContext
from graph.records import DecisionLog, task_identity
from graph.state import AirlockState, InputState, written
from nodes.agent import CallModel, RouteAfterModel
from nodes.input_guard import InputGuard, respond_refusal_factory, route_after_input
from nodes.output_guard import OutputGuard
from nodes.tool_guard import ToolGuard

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langgraph.graph.state import CompiledStateGraph

    from graph.runtime import AirlockServices

__all__ = ["RecordDecisions", "build_graph"]


class RecordDecisions:
    """Wrap a node so the decisions it returns are also rows of ``guard_decisions``.

    Written when the node returns, before LangGraph saves its writes, under the task's id:
    a task re-run after an interrupt or a crash replaces its rows (never doubles them), and a
    task that raised (an interrupt) wrote none.
    """

    def __init__(self, node: Any, *, name: str, log: DecisionLog) -> None:
        self._node, self._name, self._log = node, name, log

    def __call__(self, state: Any, config: RunnableConfig, runtime: Runtime[AirlockContext]) -> Any:
        """Run the node, then record its decisions."""
        update = self._node(state, config, runtime)
        decisions = written(update.get("decisions")) if isinstance(update, dict) else None
        thread_id, task_id, step = task_identity(config)
        if decisions and thread_id is not None and task_id is not None:
            self._log.record(thread_id=thread_id, task_id=task_id, step=step, node=self._name,
                             decisions=decisions)
        return update


# The nodes that return guard decisions.
_DECIDING = frozenset({"guard_input", "call_model", "guard_tool_call", "guard_output"})


def build_graph(
    *,
    services: AirlockServices,
    model: BaseChatModel | None = None,
    checkpointer: Checkpointer = None,
    name: str = "airlock",
    bounded_state: bool = True,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Compile the airlock graph.

    Args:
        services: Pool, policy, domain, audit, guard pipelines (see ``graph.runtime``).
        model: The chat model; defaults to the one the services were configured with.
        checkpointer: A saver (Postgres in production). ``langgraph dev`` supplies its own.
        name: The graph's name.
        bounded_state: True (always, but in ``airlock bench growth``): the state keeps the
            current turn, earlier turns are in ``thread_messages`` and ``guard_decisions``, and
            the model gets ``model.history``. False builds the state as it was before (every
            message and decision in each checkpoint, the whole history sent to the model), to
            measure the two side by side.
    """
    chat_model = model if model is not None else services.model
    policy = services.policy
    transcript = services.transcript

    def earlier(thread_id: str, limit: int | None) -> list[Any]:
        return transcript.messages(thread_id) if limit is None else transcript.tail(thread_id, limit)

    # Node objects are callables with (state, config, runtime) signatures; typed as Any
    # because StateGraph's overloads only describe plain functions.
    nodes: dict[str, Any] = {
        "guard_input": InputGuard(
            pipeline=services.input_pipeline, audit=services.audit,
            uncertain_action=policy.guards.uncertain_action, vault_for=services.vault_for,
            review_uncertain=services.review_uncertain, archive=transcript.archive if bounded_state else None,
            one_turn=bounded_state,
        ),
        "respond_refusal": respond_refusal_factory(policy.guards.refusal_message),
        "call_model": CallModel(
            model=chat_model, tools=services.domain.model_tools(), system_prompt=services.plugin.system_prompt,
            outcomes=services.outcomes, scan_result=services.scan_tool_result,
            max_history=policy.model.history.max_messages if bounded_state else None, earlier=earlier,
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
            pipeline=services.output_pipeline, audit=services.audit, rules=services.plugin.output,
            vault_for=services.vault_for,
        ),
    }
    builder = StateGraph(AirlockState, context_schema=AirlockContext, input_schema=InputState)
    for node_name, node in nodes.items():
        if node_name in _DECIDING and bounded_state:
            node = RecordDecisions(node, name=node_name, log=services.decision_log)
        builder.add_node(node_name, node)
    builder.add_edge(START, "guard_input")
    builder.add_conditional_edges("guard_input", route_after_input, ["respond_refusal", "call_model"])
    builder.add_edge("respond_refusal", END)
    route = RouteAfterModel(conversation_facts=services.plugin.conversation_facts,
                            earlier_texts=transcript.customer_texts)
    builder.add_conditional_edges("call_model", route, ["guard_tool_call", "guard_output"])
    builder.add_edge("guard_tool_call", "call_model")
    builder.add_edge("guard_output", END)
    return builder.compile(checkpointer=checkpointer, name=name)
