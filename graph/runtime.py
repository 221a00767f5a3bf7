"""Runtime configuration (one kw-only dataclass) and the services built from it."""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from langchain_core.language_models import BaseChatModel
from langgraph.checkpoint.postgres import PostgresSaver
from psycopg_pool import ConnectionPool

from graph.db import DatabaseConfigError, default_data_dir, migrate, open_pool, resolve_database_url
from graph.domain import Domain, DomainPlugin
from graph.notify import NotifySettings
from graph.policy import LayerConfig, Policy, expand_env, load_policy
from nodes.audit import AnchorScheduler, AuditLog
from nodes.audit_key import APP_ROLE, load_audit_key
from nodes.guardrails.idempotency import IdempotencyStore
from nodes.guardrails.outcomes import OutcomeStore
from nodes.guardrails.resilience import BreakerRegistry
from nodes.guards.vault import PlaceholderTypeError, VaultStore
from nodes.metrics import watch_breakers

if TYPE_CHECKING:
    from graph.checkpoint_privacy import CheckpointScrubber, PrivatePostgresSaver
    from graph.records import DecisionLog, Transcript
    from graph.reviews import EscalationReviewer, InputReviewer, ReviewStore
    from nodes.guards.base import Direction
    from nodes.guards.pipeline import GuardPipeline
    from nodes.guards.vault import PiiVault
    from nodes.guards.warmup import WarmReport

__all__ = [
    "MAX_POOL_SIZE", "AirlockServices", "AirlockSettings", "build_pipeline", "check_policy_domain", "checkpoint_serde",
    "expand_env", "prepare_database", "redact_value",
]

log = logging.getLogger(__name__)
#: The largest pool a setting may ask for (Postgres' own default allows 100 connections in all).
MAX_POOL_SIZE = 1000


@dataclass(frozen=True, kw_only=True)
class AirlockSettings:
    """Everything a deployment configures. Explicit values beat environment variables.

    Attributes:
        database_url: Postgres URL; None starts the embedded Postgres under ``data_dir``.
        data_dir: Where the embedded Postgres and the vault key live.
        policy_path: The policy YAML; None uses the served domain's default policy.
        domain: The domain served (``AIRLOCK_DOMAIN``: a name under ``tools/`` or a module
            path); None: the policy's ``domain:`` key, else ``airline`` (``graph.plugins``).
        model_provider: "offline" (rule-based planner, no LLM) or "openai" (any
            OpenAI-compatible endpoint); None decides from the environment.
        pool_max_size: Maximum Postgres connections of the app's pool (``AIRLOCK_POOL_MAX_SIZE``;
            tools, vault, audit, reviews), at least 1.
        checkpoint_pool_size: Maximum Postgres connections of the checkpointer's own pool
            (``AIRLOCK_CHECKPOINT_POOL_SIZE``, 1 to 1000): how many checkpoint reads and writes
            of this process run at once (turns of different threads no longer wait on one
            lock; see ``graph.checkpoint_privacy``). The LangGraph server's pool uses it too.
        pool_timeout: Seconds a caller queues for a connection of the app's, the checkpointer's
            or the vault's pool before the call fails with ``PoolTimeout``
            (``AIRLOCK_POOL_TIMEOUT``, above 0; default 120). Nothing is lost when it fires: a
            paused thread stays paused and a write not started is not run.
        audit_anchors_path: The append-only file of signed audit anchors; None:
            ``<data_dir>/audit-anchors.jsonl``.
        audit_anchor_every: Anchor the audit chain's head every this many events (0: never).
        audit_anchor_interval: Also anchor it every this many seconds when it advanced (0: never).
        notify: Notifications through the outbox (``AIRLOCK_NOTIFY_*``, ``AIRLOCK_SMTP_*``,
            ``AIRLOCK_OUTBOX_*``; see :class:`graph.notify.NotifySettings`); off unless a route is set.
    """

    database_url: str | None = None
    data_dir: Path = field(default_factory=default_data_dir)
    policy_path: Path | None = None
    domain: str | None = None
    model_provider: str | None = None
    pool_max_size: int = 16
    checkpoint_pool_size: int = 4
    pool_timeout: float = 120.0
    audit_anchors_path: Path | None = None
    audit_anchor_every: int = 100
    audit_anchor_interval: float = 60.0
    notify: NotifySettings = field(default_factory=NotifySettings)

    def __post_init__(self) -> None:
        """Reject negative anchor schedules and pool sizes out of range."""
        if self.audit_anchor_every < 0 or self.audit_anchor_interval < 0:
            raise ValueError("AIRLOCK_AUDIT_ANCHOR_EVERY and AIRLOCK_AUDIT_ANCHOR_INTERVAL must be >= 0")
        if not 1 <= self.pool_max_size <= MAX_POOL_SIZE:
            raise ValueError(f"AIRLOCK_POOL_MAX_SIZE must be between 1 and {MAX_POOL_SIZE}")
        if not 1 <= self.checkpoint_pool_size <= MAX_POOL_SIZE:
            raise ValueError(f"AIRLOCK_CHECKPOINT_POOL_SIZE must be between 1 and {MAX_POOL_SIZE}")
        if not self.pool_timeout > 0:
            raise ValueError("AIRLOCK_POOL_TIMEOUT must be a number of seconds above 0")

    @property
    def anchors_file(self) -> Path:
        """Return the anchors file path."""
        return self.audit_anchors_path or self.data_dir / "audit-anchors.jsonl"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> AirlockSettings:
        """Read AIRLOCK_* / DATABASE_URL; keyword overrides win."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {
            "database_url": env.get("DATABASE_URL") or None,
            "data_dir": default_data_dir(env),
            "policy_path": Path(env["AIRLOCK_POLICY"]) if env.get("AIRLOCK_POLICY") else None,
            "domain": (env.get("AIRLOCK_DOMAIN") or "").strip() or None,
            "model_provider": env.get("AIRLOCK_MODEL_PROVIDER") or None,
            "notify": NotifySettings.from_env(env),
        }
        if env.get("AIRLOCK_AUDIT_ANCHORS"):
            values["audit_anchors_path"] = Path(env["AIRLOCK_AUDIT_ANCHORS"])
        for name, attr, kind in (("AIRLOCK_POOL_MAX_SIZE", "pool_max_size", int),
                                 ("AIRLOCK_CHECKPOINT_POOL_SIZE", "checkpoint_pool_size", int),
                                 ("AIRLOCK_POOL_TIMEOUT", "pool_timeout", float),
                                 ("AIRLOCK_AUDIT_ANCHOR_EVERY", "audit_anchor_every", int),
                                 ("AIRLOCK_AUDIT_ANCHOR_INTERVAL", "audit_anchor_interval", float)):
            if env.get(name):
                try:
                    values[attr] = kind(env[name])
                except ValueError:
                    raise ValueError(f"{name} must be {'an integer' if kind is int else 'a number'}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass(kw_only=True)
class AirlockServices:
    """The long-lived parts every graph node uses, built once per process by :meth:`start`.

    Attributes:
        settings: The deployment's settings.
        plugin: The domain served (its prompt, output rules, planner...; see ``graph.plugins``).
        pool: The app's connection pool (acting as the app role).
        policy: The validated policy.
        domain: The domain's tools over the pool.
        audit: The audit log.
        idempotency: Idempotency claims of writes.
        outcomes: The recorded outcomes of writes.
        breakers: The shared circuit breakers.
        model: The chat model.
        input_pipeline: The input guard pipeline.
        output_pipeline: The output guard pipeline, or None when the policy has none.
        tool_result_pipeline: The guards on tool results, or None.
        vault_store: The PII vaults, when the policy masks PII.
        mask_text: Masks PII in a text (audit and reviewer views), when the policy masks PII.
        reviews: The reviewer inbox's store.
        reviewer: Raises and settles escalations.
        review_uncertain: Sends uncertain input to review.
        review_key: The key that signs reviewers' decisions.
        anchor_scheduler: Anchors the audit chain on a timer, when configured.
        checkpoint_tables_ready: True when start-up created LangGraph's tables as the owner.
        warm: Pipeline name ("input", "output", "tool_result") to its start-up warm-up report.
    """

    settings: AirlockSettings
    plugin: DomainPlugin
    pool: ConnectionPool
    policy: Policy
    domain: Domain
    audit: AuditLog
    idempotency: IdempotencyStore
    outcomes: OutcomeStore
    breakers: BreakerRegistry
    model: BaseChatModel
    input_pipeline: GuardPipeline
    output_pipeline: GuardPipeline | None = None
    tool_result_pipeline: GuardPipeline | None = None
    vault_store: VaultStore | None = None
    mask_text: Callable[[str], str] | None = None
    reviews: ReviewStore | None = None
    reviewer: EscalationReviewer | None = None
    review_uncertain: InputReviewer | None = None
    review_key: bytes
    anchor_scheduler: AnchorScheduler | None = None
    checkpoint_tables_ready: bool = False
    warm: dict[str, WarmReport] = field(default_factory=dict)
    _scrubber: CheckpointScrubber | None = field(default=None, init=False, repr=False)
    _checkpointer: PrivatePostgresSaver | None = field(default=None, init=False, repr=False)
    _checkpoint_pool: ConnectionPool | None = field(default=None, init=False, repr=False)
    #: The vault's own pool (see ``_pii_parts``), closed with the services.
    _vault_pool: ConnectionPool | None = field(default=None, init=False, repr=False)
    #: The database the app pool reaches (set by :meth:`start`), for the checkpointer's own pool.
    _database_url: str | None = field(default=None, init=False, repr=False)
    _checkpointer_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _decision_log: DecisionLog | None = field(default=None, init=False, repr=False)
    _transcript: Transcript | None = field(default=None, init=False, repr=False)

    # -- hooks the nodes call -----------------------------------------------------------
    def vault_for(self, thread_id: str | None) -> PiiVault | None:
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
        return redact_value(value, self.mask_text)

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

    def warm_up(self) -> dict[str, WarmReport]:
        """Load every guard model now (classifiers, Presidio/spaCy, the safety client), not on the first message."""
        from nodes.guards.warmup import warm_pipeline

        pipelines: tuple[tuple[Direction, GuardPipeline | None], ...] = (
            ("input", self.input_pipeline), ("output", self.output_pipeline),
            ("tool_result", self.tool_result_pipeline),
        )
        for name, pipeline in pipelines:
            if pipeline is not None and hasattr(pipeline, "specs"):
                self.warm[name] = warm_pipeline(pipeline, direction=name)
        report = ", ".join(f"{k} {v.ms:.0f} ms" for k, v in self.warm.items())
        log.info("guard models loaded (%s)", report or "no pipelines")
        return self.warm

    def checkpoint_scrubber(self) -> CheckpointScrubber:
        """Return what masks customer text before any checkpoint holds it (see ``graph.checkpoint_privacy``).

        It masks with the input pipeline's own PII layer and the thread's vault, so a message
        gets the placeholders the input guard gives it; without a PII layer only the size
        limit applies.
        """
        from graph.checkpoint_privacy import CheckpointScrubber
        from nodes.guards.base import GuardContext

        if self._scrubber is not None:
            return self._scrubber
        pipeline = self.input_pipeline
        layer = next((g for g in getattr(pipeline, "guards", ()) if getattr(g, "name", "") == "pii"), None)
        mask: Callable[[str, str], str] | None = None
        if layer is not None:
            def mask(thread_id: str, text: str) -> str:
                produced = getattr(layer, "produced", None)
                if produced is not None and produced(text, thread_id):
                    return text  # the input guard's own masked text, as the graph state holds it
                ctx = GuardContext(direction="input", thread_id=thread_id, vault=self.vault_for(thread_id))
                result = layer.check(text, ctx)
                return result.text if result.text is not None else text

        scrubber = self._scrubber = CheckpointScrubber(
            mask=mask, unrestore=self._unrestore if self.restores_user_values else None,
        )
        return scrubber

    @property
    def restores_user_values(self) -> bool:
        """Return True when the output guard puts the customer's own values back in answers."""
        guards = getattr(self.output_pipeline, "guards", ())
        return self.vault_store is not None and any(getattr(g, "restore_user_values", False) for g in guards)

    def _unrestore(self, thread_id: str, text: str) -> str:
        """Replace the thread's vault values in an answer by their placeholders (the output guard's inverse)."""
        vault = self.vault_for(thread_id)
        if vault is None or not text:
            return text
        values = [(v, p) for p, _ in vault.entries() if (v := vault.get(p))]
        for value, placeholder in sorted(values, key=lambda vp: -len(vp[0])):
            if value in text:
                # Whole values only ("Lei" is not taken out of "Leisure"); the placeholder is literal.
                text = re.sub(rf"(?<!\w){re.escape(value)}(?!\w)", placeholder.replace("\\", "\\\\"), text)
        return text

    def restore_for_customer(self, thread_id: str, text: str) -> str:
        """Return an answer as the customer sees it: their own values back in place of placeholders."""
        if not self.restores_user_values or "<" not in text:
            return text
        vault = self.vault_for(thread_id)
        return text if vault is None else str(vault.resolve(text))

    @property
    def decision_log(self) -> DecisionLog:
        """Return the table of every guard decision (see ``graph.records``)."""
        from graph.records import DecisionLog

        if self._decision_log is None:
            self._decision_log = DecisionLog(self.pool)
        return self._decision_log

    @property
    def transcript(self) -> Transcript:
        """Return the table of finished turns' messages, stored as the checkpoint stores them."""
        from graph.records import Transcript

        if self._transcript is None:
            scrubber = self.checkpoint_scrubber()
            self._transcript = Transcript(self.pool, serde=checkpoint_serde(self.settings.data_dir),
                                          scrub=scrubber.value)
        return self._transcript

    def checkpointer(self) -> PostgresSaver:
        """Return the process's Postgres checkpointer (tables created once) that stores no raw customer text.

        It runs on a pool of its own of ``settings.checkpoint_pool_size`` connections acting as
        the app role, without the base saver's process-wide lock, so concurrent turns of one
        process read and write checkpoints at the same time; and the checkpoint I/O of many
        turns cannot take every connection the nodes need (vault, tools, audit). Services not
        built by :meth:`start` (no URL known) use the app pool.
        """
        from graph.checkpoint_privacy import PrivatePostgresSaver

        with self._checkpointer_lock:
            saver = self._checkpointer
            if saver is None:
                pool = self.pool
                if self._database_url is not None:
                    pool = self._checkpoint_pool = open_pool(
                        self._database_url, max_size=self.settings.checkpoint_pool_size, role=APP_ROLE,
                        checkout_timeout=self.settings.pool_timeout,
                    )
                saver = PrivatePostgresSaver(
                    pool, serde=checkpoint_serde(self.settings.data_dir), scrubber=self.checkpoint_scrubber(),
                )
                if not self.checkpoint_tables_ready:  # start() made them as the owner
                    saver.setup()
                self._checkpointer = saver
        return saver

    def close(self) -> None:
        """Stop the anchor schedule (anchoring the head a last time) and close the pools."""
        scheduler, self.anchor_scheduler = self.anchor_scheduler, None
        if scheduler is not None:
            scheduler.stop()
        for own in (self._checkpoint_pool, self._vault_pool):
            if own is not None:
                own.close()
        self._checkpoint_pool = self._vault_pool = None
        self.pool.close()

    # -- construction -------------------------------------------------------------------
    @classmethod
    def start(
        cls,
        settings: AirlockSettings | None = None,
        *,
        model: BaseChatModel | None = None,
        domain_factory: Callable[..., Domain] | None = None,
        plugin: DomainPlugin | None = None,
    ) -> AirlockServices:
        """Connect, migrate, load the domain data and the policy; build the pipelines.

        Args:
            settings: The settings (default: from the environment).
            model: The chat model (default: the one the settings name; offline: the
                domain's planner).
            domain_factory: Build the domain over the pool (keyword ``pool``) instead of the
                plugin's factory (tests wrap the real domain).
            plugin: The domain served (default: the configured one, see ``graph.plugins``).
        """
        from graph.plugins import DomainConfigError, load_plugin, policy_domain
        from graph.reviews import EscalationReviewer, InputReviewer, ReviewStore, load_secret

        settings = settings or AirlockSettings.from_env()
        plugin = plugin or load_plugin(settings.domain, policy_path=settings.policy_path)
        policy_path = settings.policy_path or plugin.policy_path
        stated = policy_domain(policy_path)
        if stated is not None and stated.rsplit(".", 1)[-1] != plugin.name:  # before touching the database
            raise DomainConfigError(
                f"the policy {policy_path} is for the domain {stated!r} but the {plugin.name!r} domain is served"
                " (set AIRLOCK_DOMAIN or the policy's domain: to agree)"
            )
        # The embedded demo makes its own audit key; a deployment on its own server must supply one.
        audit_key = load_audit_key(data_dir=settings.data_dir, generate=settings.database_url is None)
        # The settings already read DATABASE_URL; None here means the embedded server.
        url = resolve_database_url(settings.database_url, environ={}, data_dir=settings.data_dir)
        prepare_database(url, plugin=plugin)
        pool = open_pool(url, max_size=settings.pool_max_size, role=APP_ROLE, checkout_timeout=settings.pool_timeout)
        scheduler: AnchorScheduler | None = None
        vault_pool: ConnectionPool | None = None
        try:
            domain = domain_factory(pool=pool) if domain_factory is not None else plugin.build(pool)
            # The one validation path `airlock policy` runs too: tools, shapes, layers, writes.
            policy = load_policy(policy_path, known_tools=domain.tools, facts=domain.neutral_facts())
            check_policy_domain(policy, plugin, policy_path)
            audit = AuditLog(pool=pool, key=audit_key, anchors_path=settings.anchors_file,
                             anchor_every=settings.audit_anchor_every)
            vault_pool = _vault_pool(policy, settings, url)
            vault_store, mask = _pii_parts(policy, settings, vault_pool, plugin)
            reviews = ReviewStore(pool=pool, audit=audit)
            review_key = load_secret(pool)
            # Seals what was appended since the last anchor (events from before the audit key too).
            audit.anchor_if_advanced()
            if settings.audit_anchor_interval:
                scheduler = AnchorScheduler(audit, interval=settings.audit_anchor_interval).start()
            services = cls(
                settings=settings, plugin=plugin, pool=pool, policy=policy, domain=domain, audit=audit,
                idempotency=IdempotencyStore(pool=pool), outcomes=OutcomeStore(pool=pool),
                breakers=BreakerRegistry(pool=pool), model=model or _default_model(settings, plugin),
                input_pipeline=build_pipeline(policy.guards.input, **_bounds(policy, "input")),
                output_pipeline=(build_pipeline(policy.guards.output, **_bounds(policy, "output"))
                                 if policy.guards.output else None),
                tool_result_pipeline=(
                    build_pipeline(policy.guards.tool_result, **_bounds(policy, "tool_result"))
                    if policy.guards.tool_result else None
                ),
                vault_store=vault_store, mask_text=mask, reviews=reviews, review_key=review_key,
                reviewer=EscalationReviewer(
                    policy=policy, store=reviews, audit=audit, redact=partial(redact_value, mask=mask),
                    signing_key=review_key,
                ),
                review_uncertain=InputReviewer(store=reviews, audit=audit, signing_key=review_key),
                anchor_scheduler=scheduler, checkpoint_tables_ready=True,
            )
            services._database_url, services._vault_pool = url, vault_pool
            if settings.notify.enabled:
                from graph.outbox import Outbox

                # Enqueued on the audit insert's cursor: a notice commits with its event or not at all.
                writes = [name for name, spec in domain.tools.items() if spec.write]
                services.audit.listeners.append(Outbox(settings.notify, writes=writes).on_audit_event)
            services.warm_up()
            watch_breakers(services.breakers.states)
        except Exception:
            if scheduler is not None:
                scheduler.stop()
            if vault_pool is not None:
                vault_pool.close()
            pool.close()
            raise
        return services


def check_policy_domain(policy: Policy, plugin: DomainPlugin, path: str | Path) -> None:
    """Refuse a policy written for another domain than the one served.

    Raises:
        DomainConfigError: The policy's ``domain:`` names another domain.
    """
    from graph.plugins import DomainConfigError

    if policy.domain is not None and policy.domain.rsplit(".", 1)[-1] != plugin.name:
        raise DomainConfigError(
            f"the policy {path} is for the domain {policy.domain!r} but the {plugin.name!r} domain is served"
            " (set AIRLOCK_DOMAIN or the policy's domain: to agree)"
        )


def redact_value(value: Any, mask: Callable[[str], str] | None) -> Any:
    """Mask PII in a JSON-like value with ``mask`` (None: unchanged)."""
    if mask is None or value is None:
        return value
    if isinstance(value, str):
        return mask(value)
    # One analyzer pass over the whole document instead of one per string.
    text = json.dumps(value, ensure_ascii=False, default=str)
    masked = mask(text)
    if masked == text:
        return value
    try:
        return json.loads(masked)
    except ValueError:  # a span crossed JSON syntax: fall back to field by field
        if isinstance(value, Mapping):
            return {k: redact_value(v, mask) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [redact_value(v, mask) for v in value]
        return value


def prepare_database(
    url: str, *, plugin: DomainPlugin | None = None, check_member: bool = True
) -> None:
    """As the connecting user (the owner): apply migrations, load the domain's seed data, create the checkpoint tables.

    The app then connects as :data:`nodes.audit_key.APP_ROLE`, which may not create tables and may
    only INSERT and SELECT the audit tables. A login that is a member of that role but owns
    nothing works too once an owner has migrated (``airlock db migrate``): every step here is
    then a check that finds nothing to do.

    Args:
        url: The database, reached as the owner (or, once migrated, as a member of the app role).
        plugin: The domain whose migrations and seed data to apply (default: the configured one).
        check_member: Require that the connecting user may act as the app role (not for ``db migrate``).

    Raises:
        DatabaseConfigError: The connecting user cannot act as the app role.
    """
    if plugin is None:
        from graph.plugins import load_plugin

        plugin = load_plugin()
    owner = open_pool(url, max_size=2)
    try:
        migrate(owner, domains=(plugin,))
        if plugin.seed is not None:
            plugin.seed(owner)
        with owner.connection() as conn:
            row = conn.execute(
                "SELECT current_user AS who, pg_has_role(current_user, %s, 'MEMBER') AS member", (APP_ROLE,),
            ).fetchone()
            assert row is not None
        if check_member and not row["member"]:  # type: ignore[call-overload]
            raise DatabaseConfigError(
                f"the database user {row['who']} cannot act as {APP_ROLE}, the role the app runs as: "  # type: ignore[call-overload]
                f"run GRANT {APP_ROLE} TO {row['who']} as the owner"  # type: ignore[call-overload]
            )
        _make_checkpoint_tables(owner)
    finally:
        owner.close()


def _make_checkpoint_tables(pool: Any) -> None:
    """Run LangGraph's checkpoint migrations unless done; safe from several processes at once.

    Processes starting together on a new database all run the setup, one migration at a time.
    One that meets another's row or table (a unique violation), or is chosen as the victim of a
    deadlock between two index builds (the setup builds indexes CONCURRENTLY, which waits for
    every open snapshot), lost to a process that is making progress: it reads the version again
    and goes on from there. Not a lock: a process waiting on it holds a snapshot, which the
    other's index build waits for, so a lock would deadlock them for certain. Each failure
    means another process applied a migration, so the attempts are bounded by the migrations.
    """
    target = len(PostgresSaver.MIGRATIONS) - 1
    attempts = 2 * len(PostgresSaver.MIGRATIONS) + 2
    for attempt in range(attempts):
        if _checkpoint_version(pool) >= target:
            break
        try:
            PostgresSaver(pool).setup()
            break
        except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateObject, psycopg.errors.DuplicateTable,
                psycopg.errors.DeadlockDetected):
            if attempt == attempts - 1:
                raise
    _rebuild_invalid_checkpoint_indexes(pool)


_INVALID_CHECKPOINT_INDEXES = (
    "SELECT ci.relname AS name, pg_get_indexdef(i.indexrelid) AS definition"
    "  FROM pg_index i JOIN pg_class ci ON ci.oid = i.indexrelid"
    "  JOIN pg_class ct ON ct.oid = i.indrelid JOIN pg_namespace n ON n.oid = ct.relnamespace"
    " WHERE n.nspname = current_schema() AND ct.relname IN ('checkpoints', 'checkpoint_blobs', 'checkpoint_writes')"
    "   AND NOT i.indisvalid"
    "   AND i.indexrelid NOT IN (SELECT index_relid FROM pg_stat_progress_create_index)"  # not being built
)


def _rebuild_invalid_checkpoint_indexes(pool: Any, rounds: int = 5) -> None:
    """Rebuild a checkpoint index left invalid by an index build that lost a deadlock.

    ``CREATE INDEX CONCURRENTLY IF NOT EXISTS`` skips an index that exists, valid or not, so a
    cancelled build would otherwise leave the table without its index for good (every lookup
    of a thread a scan). One process repairs (a try-lock: the others never wait on it, see
    ``_make_checkpoint_tables``), never an index another process is still building; a repair
    that loses a deadlock in turn is tried again.
    """
    key = "SELECT hashtext('airlock:checkpoint-indexes') AS k"
    with pool.connection() as conn:
        k = conn.execute(key).fetchone()["k"]
        if not conn.execute("SELECT pg_try_advisory_lock(%s) AS got", (k,)).fetchone()["got"]:
            return  # another process is repairing them
        try:
            for _ in range(rounds):
                broken = [(str(r["name"]), str(r["definition"])) for r in conn.execute(_INVALID_CHECKPOINT_INDEXES)]
                if not broken:
                    return
                try:  # the pool's connections are autocommit, as the CONCURRENTLY forms need
                    for name, definition in broken:
                        conn.execute(psycopg.sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
                            psycopg.sql.Identifier(name)))
                        conn.execute(re.sub(r"^CREATE (UNIQUE )?INDEX ", r"CREATE \1INDEX CONCURRENTLY IF NOT EXISTS ",
                                            definition))
                except psycopg.errors.DeadlockDetected:
                    continue
                except psycopg.errors.InsufficientPrivilege:
                    break  # a login that does not own the tables: say so, and start
            log.warning("checkpoint indexes left invalid (lookups scan the table): %s; drop them"
                        " (DROP INDEX CONCURRENTLY) and start once as the tables' owner to rebuild them",
                        ", ".join(name for name, _ in broken))
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (k,))


def _checkpoint_version(pool: Any) -> int:
    """Return the newest LangGraph checkpoint migration applied (-1: no checkpoint tables)."""
    with pool.connection() as conn:
        row = conn.execute("SELECT to_regclass('public.checkpoint_migrations') IS NOT NULL AS has_table").fetchone()
        if row is None or not row["has_table"]:
            return -1
        top = conn.execute("SELECT max(v) AS v FROM checkpoint_migrations").fetchone()
        return -1 if top is None or top["v"] is None else int(top["v"])


def checkpoint_serde(data_dir: Path) -> Any:
    """Return the encrypting checkpoint serializer keyed from the vault key."""
    from graph.checkpoint_crypto import encrypted_serde
    from nodes.guards.vault import load_vault_key

    return encrypted_serde(load_vault_key(data_dir=data_dir))


def _bounds(policy: Policy, direction: str) -> dict[str, Any]:
    return {"max_chars": getattr(policy.guards.max_chars, direction),
            "layer_budget_ms": policy.guards.layer_budget_ms}


def build_pipeline(
    layers: list[LayerConfig], *, max_chars: int | None = None, layer_budget_ms: float | None = None
) -> GuardPipeline:
    """Build a guard pipeline from the policy's ordered layer list.

    Args:
        layers: The policy's layers, in order.
        max_chars: Longer texts are blocked unread (default: the pipeline's).
        layer_budget_ms: A layer's time budget; None: none (the app passes the policy's, after
            which the models are warmed before the first message).
    """
    from nodes.guards.pipeline import DEFAULT_MAX_CHARS, GuardPipeline, layer_specs

    return GuardPipeline(
        layers=layer_specs(layers),
        max_chars=max_chars or DEFAULT_MAX_CHARS,
        layer_budget_ms=layer_budget_ms,
    )


def _default_model(settings: AirlockSettings, plugin: DomainPlugin) -> BaseChatModel:
    from nodes.model.factory import ModelSettings, make_chat_model

    env = dict(os.environ)
    if settings.model_provider:
        env["AIRLOCK_MODEL_PROVIDER"] = settings.model_provider
    return make_chat_model(ModelSettings.from_env(env), offline=plugin.offline_planner, domain=plugin.name)


#: Connections of the vault's own pool per process: its statements are single, short and
#: autocommit, and never wait on a row lock. Opened on demand (none held idle at start).
VAULT_POOL_SIZE = 2


def _vault_pool(policy: Policy, settings: AirlockSettings, url: str) -> ConnectionPool | None:
    """Open the PII vault's own pool when the policy masks PII, else None.

    Not the app pool: the tool-result guard stores a result's values in the vault inside the
    write's transaction, which holds an app-pool connection and the rows it locked. Writes
    waiting on one row could hold every app-pool connection, and the holder would then wait
    for a connection none of them gives back (tests/test_pool_nesting.py).
    """
    pii_layers = {"pii", "output_pii"}
    if not any(layer.layer in pii_layers for layer in (*policy.guards.input, *policy.guards.output)):
        return None
    return open_pool(url, min_size=0, max_size=VAULT_POOL_SIZE, role=APP_ROLE,
                     checkout_timeout=settings.pool_timeout)


def _pii_parts(
    policy: Policy, settings: AirlockSettings, pool: ConnectionPool | None, plugin: DomainPlugin,
) -> tuple[VaultStore | None, Callable[[str], str] | None]:
    """Return the PII vault store and the text masker when the policy's pipelines use the PII layer.

    Also gives the PII layer the served domain's allowances (``DomainPlugin.pii``) and the
    data-request layer its words for other people's data (``DomainPlugin.third_party``).
    """
    pii_layers = {"pii", "output_pii"}
    guards = policy.guards
    if any(layer.layer in pii_layers for layer in (*guards.input, *guards.output, *guards.tool_result)):
        from nodes.guards.pii import use_allowances

        # One domain per process: the PII layer keeps the served domain's identifiers and words.
        use_allowances(plugin.pii)
    if any(layer.layer == "data_request" for layer in guards.input):
        from nodes.guards.data_request import use_vocabulary

        use_vocabulary(plugin.third_party)
    if pool is None:  # no masking layer: no vault (see _vault_pool)
        return None, None
    from nodes.guards.pii import mask_text
    from nodes.guards.vault import load_vault_key

    key = load_vault_key(data_dir=settings.data_dir)
    return VaultStore(pool=pool, key=key), lambda text: mask_text(text)[0]
