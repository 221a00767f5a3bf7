"""The contract between the engine and a tool domain: the ``Domain`` protocol and the ``DomainPlugin`` port."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ValidationError

from graph.errors import AirlockError

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from psycopg_pool import ConnectionPool

__all__ = [
    "ForgetsCustomers",
    "Choice",
    "Domain",
    "DomainPlugin",
    "OutputRules",
    "PiiAllowances",
    "StaleDecisionError",
    "StatedQuestion",
    "ThirdPartyVocabulary",
    "ToolSpecLike",
    "WriteGuard",
    "describe_validation_error",
    "openai_tool_schemas",
    "validate_tool_args",
]


class StaleDecisionError(AirlockError):
    """The write's own transaction found that the decision behind it no longer holds.

    Raised by :meth:`WriteGuard.verify` inside the write's transaction, so nothing is
    written; the engine then raises a new gate (or review) with the current figures, or
    denies.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class WriteGuard(Protocol):
    """The engine's part of a guarded write, run by the domain inside the write's transaction.

    The domain locks the rows the call decides on, recomputes the facts and the state token
    on them, and calls :meth:`verify` before changing anything; after the change it calls
    :meth:`record` on the same cursor, before commit.
    """

    @property
    def thread_id(self) -> str | None:
        """Return the conversation the call comes from."""
        ...

    @property
    def user_id(self) -> str | None:
        """Return the authenticated customer."""
        ...

    @property
    def conversation(self) -> Mapping[str, Any]:
        """Return the customer-stated facts the decision used."""
        ...

    def verify(self, facts: dict[str, Any], state_token: str) -> None:
        """Raise :class:`StaleDecisionError` unless the decision still holds on these facts."""
        ...

    def record(self, cursor: Any, result: Mapping[str, Any]) -> None:
        """Record the outcome (and its audit event) in the write's transaction."""
        ...


def openai_tool_schemas(tools: Mapping[str, ToolSpecLike]) -> list[dict[str, Any]]:
    """Return the OpenAI tool schemas of ``tools`` for ``model.bind_tools``, named and described by each spec."""
    from langchain_core.utils.function_calling import convert_to_openai_tool

    out: list[dict[str, Any]] = []
    for spec in tools.values():
        tool = convert_to_openai_tool(spec.args_schema)
        tool["function"]["name"] = spec.name
        tool["function"]["description"] = spec.description
        out.append(tool)
    return out


def validate_tool_args(
    tools: Mapping[str, ToolSpecLike], tool: str, args: Mapping[str, Any] | None, *, error_type: type[Exception],
) -> BaseModel:
    """Validate ``args`` against ``tool``'s schema.

    Raises:
        error_type: The tool is unknown or the arguments do not match its schema (the domain's
            refusal type, so the model gets it back as an invalid result).
    """
    spec = tools.get(tool)
    if spec is None:
        raise error_type(f"Unknown tool: {tool}")
    try:
        return spec.args_schema.model_validate(dict(args or {}))
    except ValidationError as exc:
        raise error_type(f"Invalid arguments for {tool}: {describe_validation_error(exc)}") from exc


def describe_validation_error(exc: ValidationError) -> str:
    """Summarise invalid tool arguments as ``field.path: reason; ...`` (no input values)."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'args'}: {e['msg']}" for e in exc.errors())


@dataclass(frozen=True, slots=True, kw_only=True)
class Choice:
    """One answer the customer may pick.

    Attributes:
        value: What the button sends (a short code, never shown as the fact's source).
        label: What the customer reads.
        fact: The value the guardrails see when this choice is picked.
    """

    value: str
    label: str
    fact: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class StatedQuestion:
    """A fact only the customer can state, asked by the system before a tool's guardrails.

    Attributes:
        id: Stable name of the question (unique per tool).
        fact: The key under ``facts.conversation`` that the answer sets.
        question: The text the customer is asked.
        choices: The only answers accepted (in display order; a typed reply may give the
            number or the exact label).
        when: CEL over ``args`` and ``facts`` (computed with the answers given so far):
            ask only when the rules need the answer. ``"true"`` asks always.
    """

    id: str
    fact: str
    question: str
    choices: tuple[Choice, ...]
    when: str = "true"


class ToolSpecLike(Protocol):
    """What the graph needs to know about one tool."""

    @property
    def name(self) -> str:
        """Return the tool name."""
        ...

    @property
    def description(self) -> str:
        """Return the description the model sees."""
        ...

    @property
    def args_schema(self) -> type[BaseModel]:
        """Return the pydantic model that validates arguments."""
        ...

    @property
    def write(self) -> bool:
        """Return True when the tool changes data or moves money."""
        ...


class ForgetsCustomers(Protocol):
    """Optional domain hook for ``airlock privacy forget`` (``graph.privacy``).

    A domain that keeps personal data of its own (a customer profile) implements it; the
    engine calls it in the erasure's transaction and never needs to know the fields.
    """

    def forget_customer(self, cur: Any, customer_id: str) -> dict[str, int]:
        """Erase the customer's personal fields on ``cur``; return counts by record kind (0: none found)."""
        ...


class Domain(Protocol):
    """A set of tools over a backend, and the facts guardrails are evaluated on."""

    @property
    def tools(self) -> Mapping[str, ToolSpecLike]:
        """Return the tools by name."""
        ...

    def model_tools(self) -> list[dict[str, Any]]:
        """Return OpenAI-style tool schemas to bind to the chat model."""
        ...

    def facts(
        self, tool: str, args: Mapping[str, Any], *, user_id: str | None,
        conversation: Mapping[str, Any], conversation_id: str | None = None,
    ) -> dict[str, Any]:
        """Compute, by code, everything a guardrail may rely on for this call (window facts included)."""
        ...

    def neutral_facts(self) -> dict[str, Any]:
        """Return a facts dict with every key present (neutral values): the shape rules are checked against."""
        ...

    def stated_questions(self, tool: str) -> Sequence[StatedQuestion]:
        """Return the questions the customer must answer before ``tool``'s guardrails, in order."""
        ...

    def describe_call(self, tool: str, args: Mapping[str, Any], facts: Mapping[str, Any] | None = None) -> str:
        """Return one plain-language sentence for a call, as a customer should read it.

        No tool names, raw JSON or payment-method ids: e.g. the action, the amount and the
        card's last digits (from ``facts`` when the caller has them). Staff views keep the raw
        call beside it.
        """
        ...

    def state_token(self, tool: str, args: Mapping[str, Any], *, user_id: str | None) -> str:
        """Return a digest of the current state this call acts on (e.g. the reservation)."""
        ...

    def execute(
        self, tool: str, args: Mapping[str, Any], *, idempotency_key: str | None,
        guard: WriteGuard | None = None,
    ) -> Any:
        """Run the tool against the backend; raise the domain's error type on refusal.

        A write given a ``guard`` re-verifies the decision and records its outcome inside its
        own transaction (see :class:`WriteGuard`); a retry with the same ``idempotency_key``
        returns the stored result instead of writing again.
        """
        ...

    def reconcile(self, idempotency_key: str) -> dict[str, Any] | None:
        """Settle a write whose attempt timed out: its stored result, or None once fenced off.

        After None, a late attempt under that key can no longer change anything.
        """
        ...

    @property
    def pii_fields(self) -> Mapping[str, str]:
        """Return the argument names whose placeholders code may resolve, with each one's PII type."""
        ...

    @property
    def error_type(self) -> type[Exception]:
        """Return the exception a tool raises for a refused request (not retried)."""
        ...


# -- the domain port: what a domain package gives the engine ----------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PiiAllowances:
    """Text of a domain that the PII layer must leave alone.

    Attributes:
        id_patterns: Regular expressions of identifiers that are not PII (booking codes, ids
            of the domain's records); a match is never masked, except by the checksum- or
            syntax-validated types (card, IBAN, e-mail). A named group ``v`` narrows the kept
            span to that group (a ticket number after "e-ticket").
        caps_ids: Regular expressions (full match) of all-caps words that are identifiers,
            not names (a word with a digit already is one), e.g. ``[A-Z]{3}`` for codes.
        places: Lower-case place names that NER alone must not call a person.
        non_names: Lower-case capitalised words of the domain that are never names (they
            do not wake NER up and are trimmed from names).
    """

    id_patterns: tuple[str, ...] = ()
    caps_ids: tuple[str, ...] = ()
    places: frozenset[str] = frozenset()
    non_names: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True, kw_only=True)
class ThirdPartyVocabulary:
    """A domain's words for other people and their data, read by the ``data_request`` input layer.

    The engine's layer knows the generic ones (another customer, a named person's possessive,
    someone else's address, phone, e-mail, date of birth, passport, card); a domain adds what
    only its customers say: an airline's seat numbers, crew and passenger lists, a store's
    other shoppers' orders. Each entry is a regular expression (matched case-insensitively on
    an NFKC copy of one clause); the layer validates and compiles them once.

    Attributes:
        data: Kinds of personal data of this domain (the object of a request: "seat",
            "itinerary", "delivery").
        third_party: Phrases naming a third party of this domain ("the passenger in 14C",
            "the crew's hotel", "whoever placed order #W...").
    """

    data: tuple[str, ...] = ()
    third_party: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputRules:
    """What the output guard enforces for this domain, whatever the model writes.

    Attributes:
        handoff_tool: The tool whose successful result means the customer was handed to a
            human; None: the domain has no hand-off.
        handoff_text: The answer after a hand-off (a policy escalation's notice wins).
        handoff_failed_text: Said instead when the model announces a transfer (``handoff_text``)
            that did not happen: the hand-off was rejected, timed out, declined or failed. The
            result's own message (a reviewer's words) follows it.
    """

    handoff_tool: str | None = None
    handoff_text: str = "You are being transferred to a human agent. Please hold on."
    handoff_failed_text: str = "The hand-off to a human agent did not go through."


def _no_conversation_facts(texts: Sequence[str]) -> dict[str, Any]:
    return {}


def _no_prompts(customer: str | None) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainPlugin:
    """Everything a domain package ``tools/<name>/`` gives the engine, through ``plugin()``.

    The engine (``graph/``, ``nodes/``, ``ui/``) never imports a domain: ``graph.plugins``
    imports the package named by configuration and calls its ``plugin()``, which must be
    cheap (no database, no model; heavy imports go inside the factories).

    Attributes:
        name: The domain's name (the package name, ``[a-z][a-z0-9_]*``).
        build: Build the :class:`Domain` over the application's pool.
        tools: The tool specs, without a pool (``airlock policy`` validates against them).
        neutral_facts: :meth:`Domain.neutral_facts` without a pool.
        policy_path: The default policy file.
        system_prompt: The model's instructions (the engine appends the signed-in customer).
        conversation_facts: Facts derived by code from the customer's own messages (the
            engine passes only their texts, never the model's); they go to
            ``facts.conversation``.
        migrations: The folder of the domain's SQL migrations (``NNN_name.sql``; versions
            are the domain's own, recorded in ``domain_migrations``), or None.
        adopted_migrations: Domain version to the legacy engine version that already
            applied it (a database migrated before the domain had its own folder).
        seed: Load the domain's data into an owner pool after migrations (idempotent, run
            at every start-up), or None.
        output: The output rules (hand-off).
        pii: What the PII layer must not mask in this domain.
        third_party: The domain's words for other people's data (``data_request`` layer).
        offline_planner: Build the rule-based chat model used without an LLM
            (``AIRLOCK_MODEL_PROVIDER=offline``), or None.
        demo_prompts: Example prompts for a customer (theirs first), for the demo UI.
        demo_accounts: The demo accounts file (loopback demo only), or None.
    """

    name: str
    build: Callable[[ConnectionPool], Domain]
    tools: Mapping[str, ToolSpecLike]
    neutral_facts: Callable[[], dict[str, Any]]
    policy_path: Path
    system_prompt: str
    conversation_facts: Callable[[Sequence[str]], dict[str, Any]] = _no_conversation_facts
    migrations: Path | None = None
    adopted_migrations: Mapping[int, int] = field(default_factory=lambda: MappingProxyType({}))
    seed: Callable[[ConnectionPool], object] | None = None
    output: OutputRules = field(default_factory=OutputRules)
    pii: PiiAllowances = field(default_factory=PiiAllowances)
    third_party: ThirdPartyVocabulary = field(default_factory=ThirdPartyVocabulary)
    offline_planner: Callable[[], BaseChatModel] | None = None
    demo_prompts: Callable[[str | None], tuple[str, ...]] = _no_prompts
    demo_accounts: Path | None = None
