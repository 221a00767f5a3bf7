"""Runtime configuration (one kw-only dataclass) and the services built from it."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langgraph.checkpoint.postgres import PostgresSaver
from psycopg_pool import ConnectionPool

from graph.db import migrate, open_pool, resolve_database_url
from graph.domain import Domain
from graph.policy import LayerConfig, Policy, check_policy_for_tools, load_policy
from nodes.audit import AuditLog
from nodes.guardrails.idempotency import IdempotencyStore
from nodes.guardrails.outcomes import OutcomeStore
from nodes.guardrails.resilience import BreakerRegistry
from nodes.guards.vault import PlaceholderTypeError
from nodes.metrics import watch_breakers

__all__ = ["AirlockServices", "AirlockSettings", "build_pipeline", "checkpoint_serde", "expand_env"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class AirlockSettings:
    """Everything a deployment configures. Explicit values beat environment variables.

    Attributes:
        database_url: Postgres URL; None starts the embedded Postgres under ``data_dir``.
        data_dir: Where the embedded Postgres and the vault key live.
        policy_path: The policy YAML; None uses the shipped airline policy.
        model_provider: "offline" (rule-based planner, no LLM) or "openai" (any
            OpenAI-compatible endpoint); None decides from the environment.
        pool_max_size: Maximum Postgres connections of this process.
    """

    database_url: str | None = None
    data_dir: Path = Path(".data")
    policy_path: Path | None = None
    model_provider: str | None = None
    pool_max_size: int = 20

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> AirlockSettings:
        """Read AIRLOCK_* / DATABASE_URL; keyword overrides win."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {
            "database_url": env.get("DATABASE_URL") or None,
            "data_dir": Path(env.get("AIRLOCK_DATA_DIR", ".data")),
            "policy_path": Path(env["AIRLOCK_POLICY"]) if env.get("AIRLOCK_POLICY") else None,
            "model_provider": env.get("AIRLOCK_MODEL_PROVIDER") or None,
        }
        if env.get("AIRLOCK_POOL_MAX_SIZE"):
            try:
                values["pool_max_size"] = int(env["AIRLOCK_POOL_MAX_SIZE"])
            except ValueError:
                raise ValueError("AIRLOCK_POOL_MAX_SIZE must be an integer") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass(kw_only=True)
class AirlockServices:
    """The long-lived parts every graph node uses, built once per process."""

    settings: AirlockSettings
    pool: ConnectionPool
    policy: Policy
    domain: Domain
    audit: AuditLog
    idempotency: IdempotencyStore
    outcomes: OutcomeStore
    breakers: BreakerRegistry
    model: BaseChatModel
    input_pipeline: Any
    output_pipeline: Any | None = None
    tool_result_pipeline: Any | None = None
    vault_store: Any | None = None
    reviewer: Any | None = None
    reviews: Any | None = None
    review_uncertain: Callable[..., bool] | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    #: Pipeline name ("input", "output", "tool_result") to its start-up warm-up report.
    warm: dict[str, Any] = field(default_factory=dict)

    # -- hooks the nodes call -----------------------------------------------------------
    def vault_for(self, thread_id: str | None) -> Any:
        """Return the PII vault of a thread, or None when masking is off."""
        if self.vault_store is None or thread_id is None:
            return None
        return self.vault_store.for_thread(thread_id)

    def resolve_placeholders(self, value: Any, thread_id: str | None, *, fields: Mapping[str, str]) -> Any:
        """Restore the thread's real values for placeholders, only in the argument ``fields`` that carry PII.

        Restricting it to declared fields (passenger names, dates of birth) keeps a placeholder
        the model puts anywhere else (a flight number, a reservation id) from being turned
        back into the customer's e-mail and echoed in an error message; and each field takes
        placeholders of its own PII type only (``fields`` maps a field to it).

        Raises:
            PlaceholderTypeError: A placeholder of another type, or an unknown one, in a field
                (the message names the field path and placeholders, no values).
        """
        vault = self.vault_for(thread_id)
        if vault is None or not fields:
            return value

        def walk(node: Any, key: str | None, path: str) -> Any:
            if isinstance(node, str):
                if key is None or key not in fields or "<" not in node:
                    return node
                try:
                    return vault.resolve(node, entity_type=fields[key])
                except PlaceholderTypeError as exc:
                    raise PlaceholderTypeError(f"{path}: {exc}") from None
            if isinstance(node, Mapping):
                return {k: walk(v, k, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
            if isinstance(node, list | tuple):
                return [walk(v, key, f"{path}.{i}") for i, v in enumerate(node)]
            return node

        return walk(value, None, "")

    def redact(self, value: Any) -> Any:
        """Mask PII in a JSON-like value before it is audited or shown to a reviewer."""
        masker = self.extras.get("mask_text")
        if masker is None or value is None:
            return value
        if isinstance(value, str):
            return masker(value)
        # One analyzer pass over the whole document instead of one per string.
        text = json.dumps(value, ensure_ascii=False, default=str)
        masked = masker(text)
        if masked == text:
            return value
        try:
            return json.loads(masked)
        except ValueError:  # a span crossed JSON syntax: fall back to field by field
            if isinstance(value, Mapping):
                return {k: self.redact(v) for k, v in value.items()}
            if isinstance(value, list | tuple):
                return [self.redact(v) for v in value]
            return value

    @property
    def model_sees_masked_data(self) -> bool:
        """Return True when both customer input and tool results pass the PII layer."""
        def has_pii(layers: list[LayerConfig]) -> bool:
            return any(layer.layer == "pii" for layer in layers)

        guards = self.policy.guards
        return self.vault_store is not None and has_pii(guards.input) and has_pii(guards.tool_result)

    @property
    def scan_tool_result(self) -> Callable[[str, str | None], tuple[str, list[dict[str, Any]]]] | None:
        """Return the tool-result scanner, or None when the policy configures none."""
        pipeline = self.tool_result_pipeline
        if pipeline is None:
            return None

        def scan(text: str, thread_id: str | None) -> tuple[str, list[dict[str, Any]]]:
            from nodes.guards.base import Action, GuardContext

            result = pipeline.run(
                text, GuardContext(direction="tool_result", thread_id=thread_id,
                                   vault=self.vault_for(thread_id)),
            )
            decisions = [{"stage": "tool_result", **d.to_dict()} for d in result.decisions]
            if result.action is Action.BLOCK:
                return '{"status": "withheld", "message": "The tool result was withheld by a guard."}', decisions
            return result.text, decisions

        return scan

    def warm_up(self) -> dict[str, Any]:
        """Load every guard model now (classifiers, Presidio/spaCy, the safety client), not on the first message."""
        from nodes.guards.warmup import warm_pipeline

        for name, pipeline in (("input", self.input_pipeline), ("output", self.output_pipeline),
                               ("tool_result", self.tool_result_pipeline)):
            if pipeline is not None and hasattr(pipeline, "specs"):
                self.warm[name] = warm_pipeline(pipeline, direction=name)  # type: ignore[arg-type]
        report = ", ".join(f"{k} {v.ms:.0f} ms" for k, v in self.warm.items())
        log.info("guard models loaded (%s)", report or "no pipelines")
        return self.warm

    def checkpointer(self) -> PostgresSaver:
        """Return a Postgres checkpointer on the shared pool (tables created once)."""
        saver = self.extras.get("checkpointer")
        if saver is None:
            saver = PostgresSaver(self.pool, serde=checkpoint_serde(self.settings.data_dir))  # type: ignore[arg-type]
            saver.setup()
            self.extras["checkpointer"] = saver
        return saver  # type: ignore[no-any-return]

    def close(self) -> None:
        """Close the pool."""
        self.pool.close()

    # -- construction -------------------------------------------------------------------
    @classmethod
    def start(
        cls,
        settings: AirlockSettings | None = None,
        *,
        model: BaseChatModel | None = None,
        domain_factory: Callable[..., Domain] | None = None,
    ) -> AirlockServices:
        """Connect, migrate, load the domain data and the policy; build the pipelines."""
        from tools.airline import POLICY_PATH, ensure_loaded
        from tools.airline.domain import AirlineDomain

        settings = settings or AirlockSettings.from_env()
        # The settings already read DATABASE_URL; None here means the embedded server.
        url = resolve_database_url(settings.database_url, environ={}, data_dir=settings.data_dir)
        pool = open_pool(url, max_size=settings.pool_max_size)
        try:
            migrate(pool)
            ensure_loaded(pool)
            factory: Callable[..., Domain] = domain_factory or AirlineDomain.from_pool
            domain = factory(pool=pool)
            policy = load_policy(settings.policy_path or POLICY_PATH, known_tools=domain.tools)
            check_policy_for_tools(policy, {name: spec.write for name, spec in domain.tools.items()})
            services = cls(
                settings=settings, pool=pool, policy=policy, domain=domain,
                audit=AuditLog(pool=pool), idempotency=IdempotencyStore(pool=pool), outcomes=OutcomeStore(pool=pool),
                breakers=BreakerRegistry(pool=pool), model=model or _default_model(settings),
                input_pipeline=build_pipeline(policy.guards.input),
                output_pipeline=build_pipeline(policy.guards.output) if policy.guards.output else None,
                tool_result_pipeline=(
                    build_pipeline(policy.guards.tool_result) if policy.guards.tool_result else None
                ),
            )
            _attach_optional(services)
            services.warm_up()
            watch_breakers(services.breakers.states)
            from graph.reviews import EscalationReviewer, InputReviewer, ReviewStore, load_secret

            services.reviews = ReviewStore(pool=pool)
            services.extras["review_key"] = load_secret(pool)
            services.reviewer = EscalationReviewer(
                policy=policy, store=services.reviews, audit=services.audit, redact=services.redact,
                signing_key=services.extras["review_key"],
            )
            services.review_uncertain = InputReviewer(
                store=services.reviews, audit=services.audit, signing_key=services.extras["review_key"],
            )
        except Exception:
            pool.close()
            raise
        return services


_ENV_REF = re.compile(r"^\$\{([A-Z_][A-Z0-9_]*)(?::-(.*))?\}$")


def expand_env(value: Any, environ: Mapping[str, str] | None = None) -> Any:
    """Replace ``"${VAR}"`` / ``"${VAR:-default}"`` strings in layer params; empty becomes None."""
    env = os.environ if environ is None else environ
    if isinstance(value, str):
        match = _ENV_REF.match(value)
        if not match:
            return value
        resolved = env.get(match[1], match[2] or "")
        return resolved or None
    if isinstance(value, Mapping):
        return {k: expand_env(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, env) for v in value]
    return value


def checkpoint_serde(data_dir: Path) -> Any:
    """Return the encrypting checkpoint serializer keyed from the vault key."""
    from graph.checkpoint_crypto import encrypted_serde
    from nodes.guards.vault import load_vault_key

    return encrypted_serde(load_vault_key(data_dir=data_dir))


def build_pipeline(layers: list[LayerConfig]) -> Any:
    """Build a guard pipeline from the policy's ordered layer list."""
    from nodes.guards.pipeline import GuardPipeline, LayerSpec

    return GuardPipeline(
        layers=[
            LayerSpec(name=layer.layer, params=expand_env(dict(layer.params)), fail_open=layer.fail_open,
                      only_if_escalated=layer.only_if_escalated)
            for layer in layers
        ]
    )


def _default_model(settings: AirlockSettings) -> BaseChatModel:
    from nodes.model.factory import ModelSettings, make_chat_model

    env = dict(os.environ)
    if settings.model_provider:
        env["AIRLOCK_MODEL_PROVIDER"] = settings.model_provider
    return make_chat_model(ModelSettings.from_env(env))


def _attach_optional(services: AirlockServices) -> None:
    """Attach the PII vault and masking when the policy's pipelines use the PII layer."""
    uses_pii = any(
        layer.layer in {"pii", "output_pii"}
        for layer in (*services.policy.guards.input, *services.policy.guards.output)
    )
    if not uses_pii:
        return
    from nodes.guards.pii import mask_text
    from nodes.guards.vault import VaultStore, load_vault_key

    key = load_vault_key(data_dir=services.settings.data_dir)
    services.vault_store = VaultStore(pool=services.pool, key=key)
    services.extras["mask_text"] = lambda text: mask_text(text)[0]
