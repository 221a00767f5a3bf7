"""Offline rule-based planner of the store demo: a chat model that drives it without an LLM.

:class:`RetailPlanner` reads the conversation (the system prompt's signed-in customer, the
customer's latest request and the tool calls and results since) and writes ONE tool call or a
plain-text answer. It keeps no state between calls, so a graph resumed in another process
carries on where it stopped.

It is a deliberately naive, literal agent: it does not enforce the store's policy (ownership,
pending vs delivered, refund destinations...): the guardrails around the tools do, and a
planner that pre-filtered requests would hide them from the demo. When a guardrail denies a
call, the customer declines at the confirm gate or a reviewer rejects it, it says so and never
retries. Patterns are bounded alternations of literals over whitespace-normalised text cut to
:data:`MAX_TEXT_CHARS`, so matching is linear in the input.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from graph.errors import AirlockError
from nodes.model.offline import OfflinePlanner
from tools.retail.schemas import WRITE_TOOLS

__all__ = ["HELP_MESSAGE", "MAX_TEXT_CHARS", "TRANSFER_MESSAGE", "RetailPlanner"]

MAX_TEXT_CHARS = 4000
TRANSFER_MESSAGE = "YOU ARE BEING TRANSFERRED TO A HUMAN AGENT. PLEASE HOLD ON."
HELP_MESSAGE = (
    "I am the store's offline assistant (a rule-based planner, no LLM). I can:\n"
    "- list your orders: \"list my orders\"\n"
    "- show an order: \"show me order #W1234567\"\n"
    "- cancel a pending order: \"cancel order #W1234567, I no longer need it\"\n"
    "- return items of a delivered order: \"return the notebook from order #W1234567\"\n"
    "- exchange or change items: \"exchange item 1234567890 in order #W1234567 for item 0987654321\"\n"
    "- change your address: \"change my address to 10 Main Street, Springfield, IL 62701, USA\"\n"
    "- transfer you to a human agent: \"I want to talk to a human\"\n"
    "What would you like to do?"
)

_WS = re.compile(r"\s+")
_PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*_[0-9]+>")
_SIGNED_IN = re.compile(r"Signed-in customer: ([a-z]+_[a-z]+_\d{1,6})")
_ORDER_ID = re.compile(r"(?<![\w#])#?[Ww](\d{7})\b")
_ITEM_ID = re.compile(r"\b(\d{10})\b")
_HUMAN = re.compile(r"\b(?:human|real person|representative|supervisor|live agent|an agent)\b")
_CANCEL = re.compile(r"\bcancel")
_RETURN = re.compile(r"\b(?:return|send back|refund)")
_EXCHANGE = re.compile(r"\b(?:exchange|swap|replace|change item|change the item|modify item|switch item)")
_ADDRESS = re.compile(r"\baddress\b")
_LIST = re.compile(r"\b(?:list|show|what are|which are)\b.{0,20}\borders\b|\bmy orders\b")
_SHOW = re.compile(r"\b(?:show|status|details|where is|look up|check|what)\b")
_ALL = re.compile(r"\b(?:all|every|everything|whole order|entire order)\b")
_MISTAKE = re.compile(r"\bmistake|\bby accident|\bwrong order")
_GIFT = re.compile(r"\bgift ?card")
_ADDRESS_TO = re.compile(r"\baddress (?:to|is|:) ?(.{5,300})$", re.IGNORECASE)
_STATE_ZIP = re.compile(r"^([A-Za-z]{2}) (\d{5})$")
_FAILED = frozenset({"denied", "declined_by_user", "error", "invalid", "unavailable", "rejected_by_reviewer",
                     "unknown", "not_run", "withheld"})


class _Done(AirlockError):  # noqa: N818 - control flow, not an error
    """Raised inside a step to return the planner's next message."""

    def __init__(self, message: AIMessage) -> None:
        super().__init__("planner step done")
        self.message = message


def _text(message: BaseMessage) -> str:
    content = message.content
    return content if isinstance(content, str) else message.text


def _clean(text: str) -> str:
    return _WS.sub(" ", _PLACEHOLDER.sub(" ", text[:MAX_TEXT_CHARS])).strip()


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _money(value: Any) -> str:
    try:
        return f"USD {float(value):,.2f}"
    except (TypeError, ValueError):
        return f"USD {value}"


class _Turn:
    """One planner invocation over the messages."""

    def __init__(self, messages: Sequence[BaseMessage], bound: frozenset[str]) -> None:
        self.messages = list(messages)
        self.bound = bound
        self.n_calls = sum(len(m.tool_calls) for m in self.messages if isinstance(m, AIMessage))
        self.user = next((m.group(1) for s in reversed(self.messages) if isinstance(s, SystemMessage)
                          if (m := _SIGNED_IN.search(_text(s)[:MAX_TEXT_CHARS]))), None)
        humans = [i for i, m in enumerate(self.messages) if isinstance(m, HumanMessage)]
        start = humans[-1] if humans else len(self.messages)
        parts = [_clean(_text(self.messages[start]))] if humans else []
        # A reply to the planner's question continues the request before it.
        k = len(humans) - 1
        while k > 0 and self._asked(humans[k - 1], humans[k]):
            k -= 1
            start = humans[k]
            parts.insert(0, _clean(_text(self.messages[start])))
        self.text = " ".join(parts)
        self.lower = self.text.lower()
        self.results: dict[str, Any] = {}
        self.calls: list[tuple[str, dict[str, Any], Any]] = []
        answers = {m.tool_call_id: m for m in self.messages[start:] if isinstance(m, ToolMessage)}
        for message in self.messages[start:]:
            if isinstance(message, AIMessage):
                for call in message.tool_calls:
                    answer = answers.get(call.get("id") or "")
                    payload = _loads(_text(answer)) if answer is not None else None
                    self.calls.append((call["name"], dict(call.get("args") or {}), payload))

    def _asked(self, before: int, after: int) -> bool:
        for message in reversed(self.messages[before + 1:after]):
            if isinstance(message, AIMessage):
                return not message.tool_calls and _text(message).rstrip().endswith("?")
        return False

    # -- emitting -------------------------------------------------------------------------
    def call(self, name: str, args: dict[str, Any]) -> _Done:
        return _Done(AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": f"call_{self.n_calls}"}]))

    @staticmethod
    def say(text: str) -> _Done:
        return _Done(AIMessage(content=text))

    def need(self, name: str, args: dict[str, Any]) -> Any:
        """Return the result of ``name(args)`` in this request, or emit the call."""
        for called, called_args, payload in reversed(self.calls):
            if called == name and called_args == args and payload is not None:
                status = payload.get("status") if isinstance(payload, Mapping) else None
                if status in _FAILED:
                    raise self.say(self._failure(payload))
                if isinstance(payload, Mapping) and set(payload) <= {"status", "result"} and "result" in payload:
                    return payload["result"]
                return payload
        raise self.call(name, args)

    @staticmethod
    def _failure(payload: Mapping[str, Any]) -> str:
        status = payload.get("status")
        message = str(payload.get("message") or payload.get("error") or "").strip()
        if status == "declined_by_user":
            return "All right, I have not made that change."
        if status == "rejected_by_reviewer":
            return f"A reviewer did not approve this request. {message}".strip()
        if status == "denied":
            return f"I can't do that: {message}"
        return f"I'm sorry, that did not work: {message or status}"

    # -- planning ---------------------------------------------------------------------------
    def plan(self) -> AIMessage:
        try:
            self._finish_if_done()
            if not self.text:
                raise self.say(HELP_MESSAGE)
            if _HUMAN.search(self.lower):
                raise self.call("transfer_to_human_agents", {"summary": self.text[:500]})
            order_id = self._order_id()
            if _ADDRESS.search(self.lower) and _ADDRESS_TO.search(self.text):
                self._address(order_id)
            if order_id and _CANCEL.search(self.lower):
                self._cancel(order_id)
            if order_id and _EXCHANGE.search(self.lower):
                self._exchange(order_id)
            if order_id and _RETURN.search(self.lower):
                self._return(order_id)
            if order_id:
                self._show(order_id)
            if _LIST.search(self.lower) or "order" in self.lower:
                self._list()
            raise self.say(HELP_MESSAGE)
        except _Done as done:
            return done.message

    def _finish_if_done(self) -> None:
        """End the request once a write or the hand-off has a result: never retry it."""
        for name, _args, payload in self.calls:
            if payload is None or (name not in WRITE_TOOLS and name != "transfer_to_human_agents"):
                continue
            status = payload.get("status") if isinstance(payload, Mapping) else None
            if status in _FAILED:
                raise self.say(self._failure(payload))
            if name == "transfer_to_human_agents":
                review = payload.get("review") if isinstance(payload, Mapping) else None
                notice = review.get("notice") if isinstance(review, Mapping) else None
                raise self.say(str(notice or TRANSFER_MESSAGE))
            raise self.say(self._success(name, payload if isinstance(payload, Mapping) else {}))

    def _success(self, name: str, payload: Mapping[str, Any]) -> str:
        order = payload.get("order_id", "")
        amount, direction = payload.get("amount_usd", 0), payload.get("direction", "none")
        money = ""
        if direction == "refund" and amount:
            money = f" {_money(amount)} will be refunded."
        elif direction == "charge" and amount:
            money = f" {_money(amount)} will be charged."
        done = {
            "cancel_pending_order": f"Order {order} is cancelled.",
            "return_delivered_order_items": f"The return for order {order} is requested; you will receive an "
                                            "e-mail on how to send the items back.",
            "exchange_delivered_order_items": f"The exchange for order {order} is requested; you will receive an "
                                              "e-mail on how to send the items back.",
            "modify_pending_order_items": f"The items of order {order} are changed.",
            "modify_pending_order_address": f"The shipping address of order {order} is changed.",
            "modify_pending_order_payment": f"Order {order} is now paid with the new payment method.",
            "modify_user_address": "Your default address is changed.",
        }.get(name, "Done.")
        if payload.get("status") == "deduplicated":
            done = "This was already done earlier: " + done
        return done + money

    def _order_id(self) -> str | None:
        match = _ORDER_ID.search(self.text)
        return f"#W{match.group(1)}" if match else None

    def _order(self, order_id: str) -> Mapping[str, Any]:
        order = self.need("get_order_details", {"order_id": order_id})
        if not isinstance(order, Mapping) or not isinstance(order.get("items"), list):
            raise self.say(f"I'm sorry, I could not read order {order_id}.")
        return order

    def _profile(self) -> Mapping[str, Any]:
        if not self.user:
            raise self.say("Please sign in first: I can only help with your own account.")
        profile = self.need("get_user_details", {"user_id": self.user})
        if not isinstance(profile, Mapping):
            raise self.say("I'm sorry, I could not read your profile.")
        return profile

    def _refund_method(self, order: Mapping[str, Any]) -> str:
        if _GIFT.search(self.lower):
            methods = self._profile().get("payment_methods") or {}
            gift = next((k for k, m in methods.items() if isinstance(m, Mapping) and m.get("source") == "gift_card"),
                        None)
            if gift:
                return str(gift)
        history = order.get("payment_history") or [{}]
        return str(history[0].get("payment_method_id", ""))

    def _items(self, order: Mapping[str, Any]) -> list[str]:
        lines = [i for i in order["items"] if isinstance(i, Mapping)]
        if _ALL.search(self.lower):
            return [str(i.get("item_id")) for i in lines]
        ids = [i for i in _ITEM_ID.findall(self.text) if any(line.get("item_id") == i for line in lines)]
        if ids:
            return ids
        return [str(i.get("item_id")) for i in lines if str(i.get("name", "")).lower() in self.lower]

    def _list(self) -> None:
        orders = [str(o) for o in self._profile().get("orders") or []]
        raise self.say(f"Your orders are: {', '.join(orders)}. Which one would you like to look at?"
                       if orders else "I could not find any orders in your profile.")

    def _show(self, order_id: str) -> None:
        order = self._order(order_id)
        items = "; ".join(f"{i.get('name')} ({', '.join(f'{k} {v}' for k, v in (i.get('options') or {}).items())}),"
                          f" item {i.get('item_id')}, {_money(i.get('price'))}"
                          for i in order["items"] if isinstance(i, Mapping))
        raise self.say(f"Order {order_id} is {order.get('status')}. Items: {items}.")

    def _cancel(self, order_id: str) -> None:
        self._order(order_id)
        reason = "ordered by mistake" if _MISTAKE.search(self.lower) else "no longer needed"
        raise self.call("cancel_pending_order", {"order_id": order_id, "reason": reason})

    def _return(self, order_id: str) -> None:
        order = self._order(order_id)
        items = self._items(order)
        if not items:
            names = ", ".join(f"{i.get('name')} (item {i.get('item_id')})" for i in order["items"])
            raise self.say(f"Which items of order {order_id} do you want to return? It has: {names}?")
        raise self.call("return_delivered_order_items", {
            "order_id": order_id, "item_ids": items, "payment_method_id": self._refund_method(order)})

    def _exchange(self, order_id: str) -> None:
        order = self._order(order_id)
        ids = _ITEM_ID.findall(self.text)
        owned = {str(i.get("item_id")) for i in order["items"] if isinstance(i, Mapping)}
        old = [i for i in ids if i in owned]
        new = [i for i in ids if i not in owned]
        if not old or len(old) != len(new):
            raise self.say("Please tell me the item id you have and the item id you want instead, for example "
                           "\"exchange item 1234567890 for item 0987654321\". Which items?")
        tool = "modify_pending_order_items" if order.get("status") == "pending" else "exchange_delivered_order_items"
        raise self.call(tool, {"order_id": order_id, "item_ids": old, "new_item_ids": new,
                               "payment_method_id": self._refund_method(order)})

    def _address(self, order_id: str | None) -> None:
        match = _ADDRESS_TO.search(self.text)
        parts = [p.strip() for p in (match.group(1) if match else "").rstrip(".").split(",") if p.strip()]
        country = "USA"
        if parts and not _STATE_ZIP.match(parts[-1]):
            country = parts.pop()
        state_zip = _STATE_ZIP.match(parts[-1]) if parts else None
        if state_zip is None or len(parts) < 3:
            raise self.say("Please give the address as \"street, (apartment,) city, state zip, country\", for "
                           "example \"10 Main Street, Apt 2, Springfield, IL 62701, USA\". What is the address?")
        address = {"address1": parts[0], "address2": ", ".join(parts[1:-2]), "city": parts[-2],
                   "state": state_zip.group(1).upper(), "country": country, "zip": state_zip.group(2)}
        if order_id:
            self._order(order_id)
            raise self.call("modify_pending_order_address", {"order_id": order_id, **address})
        if not self.user:
            raise self.say("Please sign in first: I can only help with your own account.")
        raise self.call("modify_user_address", {"user_id": self.user, **address})


class RetailPlanner(OfflinePlanner):
    """The store demo's rule-based stand-in for an LLM (one tool call or one answer per turn)."""

    def plan(self, messages: Sequence[BaseMessage]) -> AIMessage:
        """Return the next message for ``messages``: one tool call with empty content, or an answer."""
        return _Turn(messages, frozenset(self.bound_tools)).plan()
