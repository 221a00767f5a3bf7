"""Erase a customer's personal data everywhere the engine keeps it (``airlock privacy forget``).

What is erased for the customer's conversations (threads the app created for them, and
threads whose graph state names them as owner, e.g. started through LangGraph's API): the
PII vault entries, every checkpoint, blob and pending write, the messages of finished turns
(``thread_messages``) and the guard decisions (``guard_decisions``), feedback, review cases and
their signed decisions, tool outcomes, idempotency results, shown-gate records and the
thread list. The domain may erase its own records through an optional hook,
``forget_customer(cur, customer_id) -> dict[str, int]``, run in the same transaction.

What is kept: the audit log. It is append-only and hash-chained, and its payloads are
masked (placeholders, counts, decisions; never a message's text), so erasing the vault
leaves its placeholders pointing at nothing. The erasure itself is audited
(``privacy.forget``, with counts only). Rows are deleted, then the tables are vacuumed so
the space is reused; copies in WAL segments and backups age out with their retention.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg import sql

from graph.errors import AirlockError

__all__ = ["ForgetReport", "UnknownCustomerError", "forget_customer"]

# Tables keyed by thread whose rows belong to the conversation (checkpoint tables are
# handled by the saver, the vault by its store).
_THREAD_TABLES = ("feedback", "reviews", "review_decisions", "tool_outcomes", "interrupt_views",
                  "thread_messages", "guard_decisions", "refused_messages", "threads")
_VACUUM = ("pii_vault", "checkpoints", "checkpoint_blobs", "checkpoint_writes", "feedback", "reviews",
           "review_decisions", "tool_outcomes", "interrupt_views", "thread_messages", "guard_decisions",
           "refused_messages", "idempotency_keys", "threads")


class UnknownCustomerError(AirlockError, LookupError):
    """No conversation and no domain record names this customer."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ForgetReport:
    """What ``forget_customer`` erased, as counts (no values)."""

    customer_id: str
    threads: int
    rows: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """Return a one-line human summary."""
        parts = ", ".join(f"{name} {n}" for name, n in sorted(self.rows.items()) if n)
        return f"forgot {self.customer_id}: threads {self.threads}" + (f"; rows: {parts}" if parts else "")


def _threads_of(conn: Any, customer_id: str) -> list[str]:
    rows = conn.execute(
        """
        SELECT thread_id FROM threads WHERE user_id = %(c)s
        UNION SELECT DISTINCT thread_id FROM checkpoints
              WHERE checkpoint -> 'channel_values' ->> 'owner' = %(c)s
        UNION SELECT thread_id FROM reviews WHERE user_id = %(c)s
        UNION SELECT thread_id FROM tool_outcomes WHERE user_id = %(c)s
        UNION SELECT thread_id FROM feedback WHERE user_id = %(c)s
        """,
        {"c": customer_id},
    ).fetchall()
    return sorted(str(r["thread_id"]) for r in rows)


def forget_customer(services: Any, customer_id: str, *, actor: str = "admin:cli") -> ForgetReport:
    """Erase ``customer_id``'s personal data from every store the engine and the domain keep.

    Args:
        services: The running :class:`graph.runtime.AirlockServices`.
        customer_id: The customer (account) id.
        actor: Who asked, for the audit event.

    Returns:
        Counts of what was erased.

    Raises:
        UnknownCustomerError: Nothing in the database names this customer.
    """
    if not isinstance(customer_id, str) or not customer_id.strip():
        raise UnknownCustomerError("name the customer: --customer ID")
    services.checkpointer()  # creates LangGraph's tables on a database no thread has used yet
    pool = services.pool
    hook = getattr(services.domain, "forget_customer", None)
    rows: dict[str, int] = {}
    with pool.connection() as conn:
        threads = _threads_of(conn, customer_id)
        with conn.transaction(), conn.cursor() as cur:
            domain_rows = hook(cur, customer_id) if hook is not None else {}
            if not threads and not any(domain_rows.values()):
                raise UnknownCustomerError(
                    f"no conversation or record of customer {customer_id!r} in this database; "
                    "check the id (see `airlock review list` or the threads table)"
                )
            rows.update({f"domain.{k}": v for k, v in domain_rows.items()})
            for table in ("checkpoint_writes", "checkpoint_blobs", "checkpoints", "pii_vault", *_THREAD_TABLES):
                cur.execute(sql.SQL("DELETE FROM {} WHERE thread_id = ANY(%s)").format(sql.Identifier(table)),
                            (threads,))
                rows[table] = cur.rowcount
            cur.execute("DELETE FROM feedback WHERE user_id = %s", (customer_id,))
            rows["feedback"] += cur.rowcount
            cur.execute("DELETE FROM idempotency_keys WHERE user_id = %s AND status <> 'in_progress'",
                        (customer_id,))
            rows["idempotency_keys"] = cur.rowcount
    if services.vault_store is not None:
        for thread_id in threads:
            services.vault_store.delete_thread(thread_id)  # drops the process's cached values too
    for thread_id in threads:
        services.transcript.forget_cached(thread_id)
    services.audit.append("privacy.forget", actor=actor, thread_id=None,
                          payload={"threads": len(threads), "rows": rows})
    with pool.connection() as conn:
        for table in _VACUUM:
            conn.execute(sql.SQL("VACUUM {}").format(sql.Identifier(table)))
    return ForgetReport(customer_id=customer_id, threads=len(threads), rows=rows)
