"""io.notify: what is announced, to whom, and how it is delivered (SMTP e-mail, a webhook).

The engine knows no domain: a notification names a kind, a conversation, a tool and neutral
fields of its audit event (a decision, a status, an amount), never tool arguments or results.
Staff addresses are configured; a customer's address is asked of the domain through the
optional :class:`ContactDirectory` hook (never taken from the model or the conversation).
Delivery is done by :mod:`graph.outbox`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import httpx

from graph.errors import AirlockError

__all__ = [
    "AUDIT_KINDS",
    "KINDS",
    "ContactDirectory",
    "DeliveryError",
    "NotifySettings",
    "NotifySettingsError",
    "SmtpTransport",
    "WebhookTransport",
    "neutral_payload",
    "render_email",
    "webhook_body",
]

#: The audit event that announces each notification kind.
AUDIT_KINDS: dict[str, str] = {
    "escalation.decided": "review.decided",
    "tool.executed": "change.executed",
    "confirm.requested": "confirm.waiting",
}
KINDS: tuple[str, ...] = tuple(AUDIT_KINDS.values())
_TLS_MODES = ("starttls", "ssl", "none")


class NotifySettingsError(AirlockError, ValueError):
    """A notification setting is missing or invalid; the message names the variable."""


class DeliveryError(AirlockError, RuntimeError):
    """A delivery attempt failed; ``permanent`` ones are dead-lettered at once instead of retried."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


@runtime_checkable
class ContactDirectory(Protocol):
    """Optional domain hook: the address the domain holds for a customer.

    A domain that implements it lets ``AIRLOCK_NOTIFY_EMAIL_CUSTOMERS`` e-mail the customer of a
    conversation; the address comes from the domain's records, never from the model.
    """

    def contact_address(self, customer_id: str) -> str | None:
        """Return the customer's e-mail address, or None when the domain has none."""
        ...


def _address(value: str, name: str) -> str:
    _, addr = parseaddr(value)
    local, at, host = addr.partition("@")
    if not (local and at and "." in host) or any(c.isspace() or c in "<>,;" for c in addr):
        raise NotifySettingsError(f"{name}: {value!r} is not an e-mail address")
    return addr


def _number(env: Mapping[str, str], name: str, default: float, *, low: float, high: float) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise NotifySettingsError(f"{name} must be a number, not {raw!r}") from None
    if not low <= value <= high:
        raise NotifySettingsError(f"{name} must be between {low:g} and {high:g}")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise NotifySettingsError(f"{name} must be 1 or 0, not {raw!r}")


@dataclass(frozen=True, kw_only=True)
class NotifySettings:
    """Notifications and their outbox; all ``AIRLOCK_NOTIFY_*`` / ``AIRLOCK_SMTP_*`` / ``AIRLOCK_OUTBOX_*``.

    Nothing is sent unless a route is configured: e-mail needs ``smtp_host`` and a recipient
    (``email_to`` or ``email_customers``), the webhook needs ``webhook_url``.

    Attributes:
        events: The kinds announced (``AIRLOCK_NOTIFY_EVENTS``, comma-separated; default all of
            ``review.decided``, ``change.executed``, ``confirm.waiting``).
        email_to: Staff (reviewer) addresses that receive every announced event
            (``AIRLOCK_NOTIFY_EMAIL_TO``, comma-separated).
        email_customers: Also e-mail the conversation's customer at the address the domain gives
            (``AIRLOCK_NOTIFY_EMAIL_CUSTOMERS``; needs a domain implementing ContactDirectory).
        smtp_host: SMTP server (``AIRLOCK_SMTP_HOST``).
        smtp_port: Its port (``AIRLOCK_SMTP_PORT``; default 587, or 465 with ``ssl``).
        smtp_tls: ``starttls`` (default), ``ssl`` or ``none`` (``AIRLOCK_SMTP_TLS``; ``none``
            only to a loopback server).
        smtp_user: Login (``AIRLOCK_SMTP_USER``); none when empty.
        smtp_password: Its password (``AIRLOCK_SMTP_PASSWORD``); never logged or shown.
        smtp_from: The sender address (``AIRLOCK_SMTP_FROM``), required with e-mail.
        webhook_url: http(s) URL that receives a JSON POST per event (``AIRLOCK_NOTIFY_WEBHOOK_URL``).
        webhook_secret: Signs each body, ``X-Airlock-Signature: sha256=<hmac>``
            (``AIRLOCK_NOTIFY_WEBHOOK_SECRET``, at least 32 bytes); never logged or shown.
        timeout_s: One delivery attempt's time limit (``AIRLOCK_NOTIFY_TIMEOUT_S``, 1-120).
        max_attempts: Attempts before a message is dead-lettered (``AIRLOCK_OUTBOX_MAX_ATTEMPTS``, 1-100).
        backoff_s: Wait after the first failure, doubled after each next one
            (``AIRLOCK_OUTBOX_BACKOFF_S``, 0.1-3600).
        backoff_max_s: Longest wait between attempts (``AIRLOCK_OUTBOX_BACKOFF_MAX_S``).
        lease_s: How long a worker holds a message it is delivering before another may take it
            (``AIRLOCK_OUTBOX_LEASE_S``; more than ``timeout_s``). A worker on the same host
            that died loses its lease at once.
        poll_s: How often an idle worker looks for due messages (``AIRLOCK_OUTBOX_POLL_S``).
        batch: Messages a worker leases at a time (``AIRLOCK_OUTBOX_BATCH``).
        worker_in_serve: Whether ``airlock serve`` runs a worker thread (``AIRLOCK_OUTBOX_WORKER``,
            default 1; any number of workers is safe).
    """

    events: tuple[str, ...] = KINDS
    email_to: tuple[str, ...] = ()
    email_customers: bool = False
    smtp_host: str | None = None
    smtp_port: int | None = None
    smtp_tls: str = "starttls"
    smtp_user: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_from: str | None = None
    webhook_url: str | None = field(default=None, repr=False)
    webhook_secret: str | None = field(default=None, repr=False)
    timeout_s: float = 10.0
    max_attempts: int = 8
    backoff_s: float = 5.0
    backoff_max_s: float = 3600.0
    lease_s: float = 120.0
    poll_s: float = 2.0
    batch: int = 20
    worker_in_serve: bool = True

    def __post_init__(self) -> None:
        """Validate every setting; the message names the variable."""
        unknown = sorted(set(self.events) - set(KINDS))
        if unknown:
            raise NotifySettingsError(
                f"AIRLOCK_NOTIFY_EVENTS: unknown {', '.join(unknown)} (known: {', '.join(KINDS)})")
        object.__setattr__(self, "email_to", tuple(_address(a, "AIRLOCK_NOTIFY_EMAIL_TO") for a in self.email_to))
        if self.smtp_tls not in _TLS_MODES:
            raise NotifySettingsError(f"AIRLOCK_SMTP_TLS must be one of {', '.join(_TLS_MODES)}")
        if (self.email_to or self.email_customers) and not self.smtp_host:
            raise NotifySettingsError("e-mail notifications need AIRLOCK_SMTP_HOST")
        if self.smtp_host:
            if not self.smtp_from:
                raise NotifySettingsError("AIRLOCK_SMTP_FROM is required with AIRLOCK_SMTP_HOST")
            _address(self.smtp_from, "AIRLOCK_SMTP_FROM")
            if self.smtp_tls == "none" and self.smtp_host not in ("localhost", "127.0.0.1", "::1"):
                raise NotifySettingsError("AIRLOCK_SMTP_TLS=none is only allowed to a loopback SMTP server")
            if self.smtp_password and not self.smtp_user:
                raise NotifySettingsError("AIRLOCK_SMTP_PASSWORD needs AIRLOCK_SMTP_USER")
        if self.smtp_port is not None and not 1 <= self.smtp_port <= 65535:
            raise NotifySettingsError("AIRLOCK_SMTP_PORT must be a port number (1-65535)")
        if self.webhook_url:
            parts = urlsplit(self.webhook_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise NotifySettingsError("AIRLOCK_NOTIFY_WEBHOOK_URL must be an http(s) URL")
        if self.webhook_secret is not None and len(self.webhook_secret.encode()) < 32:
            raise NotifySettingsError("AIRLOCK_NOTIFY_WEBHOOK_SECRET must be at least 32 bytes")
        if not 1 <= self.timeout_s <= 120:
            raise NotifySettingsError("AIRLOCK_NOTIFY_TIMEOUT_S must be between 1 and 120")
        if not 1 <= self.max_attempts <= 100:
            raise NotifySettingsError("AIRLOCK_OUTBOX_MAX_ATTEMPTS must be between 1 and 100")
        if not 0.1 <= self.backoff_s <= self.backoff_max_s <= 86400:
            raise NotifySettingsError(
                "AIRLOCK_OUTBOX_BACKOFF_S must be at least 0.1 and at most AIRLOCK_OUTBOX_BACKOFF_MAX_S (<= 86400)")
        if self.lease_s <= self.timeout_s:
            raise NotifySettingsError("AIRLOCK_OUTBOX_LEASE_S must be longer than AIRLOCK_NOTIFY_TIMEOUT_S")
        if not 0.05 <= self.poll_s <= 3600 or not 1 <= self.batch <= 1000:
            raise NotifySettingsError("AIRLOCK_OUTBOX_POLL_S must be 0.05-3600 and AIRLOCK_OUTBOX_BATCH 1-1000")

    @property
    def email(self) -> bool:
        """Return True when e-mail is configured."""
        return bool(self.smtp_host and (self.email_to or self.email_customers))

    @property
    def enabled(self) -> bool:
        """Return True when any route is configured (else nothing is enqueued)."""
        return self.email or bool(self.webhook_url)

    @property
    def port(self) -> int:
        """Return the SMTP port (its default follows the TLS mode)."""
        return self.smtp_port or (465 if self.smtp_tls == "ssl" else 587)

    def routes(self) -> list[tuple[str, str]]:
        """Return the (channel, audience) pairs each announced event is enqueued for."""
        routes: list[tuple[str, str]] = []
        if self.smtp_host and self.email_to:
            routes.append(("email", "staff"))
        if self.smtp_host and self.email_customers:
            routes.append(("email", "customer"))
        if self.webhook_url:
            routes.append(("webhook", "staff"))
        return routes

    def describe(self) -> str:
        """Return the configuration without secrets (for logs and ``--help`` output)."""
        parts = [f"events {','.join(self.events)}"]
        if self.email:
            who = [f"{len(self.email_to)} staff address(es)"] if self.email_to else []
            who += ["customers"] if self.email_customers else []
            parts.append(f"e-mail via {self.smtp_host}:{self.port} ({self.smtp_tls}) to {' and '.join(who)}")
        if self.webhook_url:
            parts.append(f"webhook {redact_url(self.webhook_url)}{' (signed)' if self.webhook_secret else ''}")
        parts.append(f"{self.max_attempts} attempts, backoff {self.backoff_s:g}s..{self.backoff_max_s:g}s")
        return "; ".join(parts)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> NotifySettings:
        """Read the settings from the environment; keyword overrides win."""
        env = os.environ if environ is None else environ

        def listed(name: str) -> tuple[str, ...]:
            return tuple(p.strip() for p in (env.get(name) or "").split(",") if p.strip())

        port = env.get("AIRLOCK_SMTP_PORT") or None
        if port is not None and not port.isdigit():
            raise NotifySettingsError(f"AIRLOCK_SMTP_PORT must be a port number, not {port!r}")
        values: dict[str, Any] = {
            "events": listed("AIRLOCK_NOTIFY_EVENTS") or KINDS,
            "email_to": listed("AIRLOCK_NOTIFY_EMAIL_TO"),
            "email_customers": _flag(env, "AIRLOCK_NOTIFY_EMAIL_CUSTOMERS", False),
            "smtp_host": env.get("AIRLOCK_SMTP_HOST") or None,
            "smtp_port": int(port) if port else None,
            "smtp_tls": (env.get("AIRLOCK_SMTP_TLS") or "starttls").strip().lower(),
            "smtp_user": env.get("AIRLOCK_SMTP_USER") or None,
            "smtp_password": env.get("AIRLOCK_SMTP_PASSWORD") or None,
            "smtp_from": env.get("AIRLOCK_SMTP_FROM") or None,
            "webhook_url": env.get("AIRLOCK_NOTIFY_WEBHOOK_URL") or None,
            "webhook_secret": env.get("AIRLOCK_NOTIFY_WEBHOOK_SECRET") or None,
            "timeout_s": _number(env, "AIRLOCK_NOTIFY_TIMEOUT_S", 10.0, low=1, high=120),
            "max_attempts": int(_number(env, "AIRLOCK_OUTBOX_MAX_ATTEMPTS", 8, low=1, high=100)),
            "backoff_s": _number(env, "AIRLOCK_OUTBOX_BACKOFF_S", 5.0, low=0.1, high=86400),
            "backoff_max_s": _number(env, "AIRLOCK_OUTBOX_BACKOFF_MAX_S", 3600.0, low=0.1, high=86400),
            "lease_s": _number(env, "AIRLOCK_OUTBOX_LEASE_S", 120.0, low=1, high=86400),
            "poll_s": _number(env, "AIRLOCK_OUTBOX_POLL_S", 2.0, low=0.05, high=3600),
            "batch": int(_number(env, "AIRLOCK_OUTBOX_BATCH", 20, low=1, high=1000)),
            "worker_in_serve": _flag(env, "AIRLOCK_OUTBOX_WORKER", True),
        }
        raw_attempts = env.get("AIRLOCK_OUTBOX_MAX_ATTEMPTS")
        if raw_attempts and not raw_attempts.strip().isdigit():
            raise NotifySettingsError("AIRLOCK_OUTBOX_MAX_ATTEMPTS must be a whole number")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def redact_url(url: str) -> str:
    """Return ``url`` without credentials, query or fragment (they may hold a token)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


# -- what a notification says -----------------------------------------------------------------
def neutral_payload(kind: str, event_payload: Mapping[str, Any]) -> dict[str, Any]:
    """Return the audit payload's fields a notification may carry (no arguments, results or text)."""
    if kind == "review.decided":
        keep = ("decision", "escalation", "reviewer")
    elif kind == "change.executed":
        keep = ("action", "tool_call_id", "confirmed_by")
    else:
        keep = ("tool_call_id", "amount_usd", "args_hash")
    return {k: event_payload[k] for k in keep if isinstance(event_payload.get(k), str | int | float)}


_SUBJECTS = {
    "review.decided": "Review decided: {decision}",
    "change.executed": "Change carried out",
    "confirm.waiting": "Confirmation waiting",
}
_CUSTOMER_TEXT = {
    "review.decided": "A reviewer has looked at your request ({decision}). Open your conversation for the details.",
    "change.executed": "The change you asked for has been carried out. Open your conversation for the details.",
    "confirm.waiting": "A change is waiting for your confirmation. Open your conversation to confirm or cancel it.",
}


def render_email(row: Mapping[str, Any], *, sender: str, recipients: list[str]) -> EmailMessage:
    """Return the e-mail of an outbox row; its Message-ID is the row's idempotency key."""
    data = dict(row.get("payload") or {})
    kind = str(row["kind"])
    decision = str(data.get("decision", ""))
    message = EmailMessage()
    subject = _SUBJECTS.get(kind, kind).format(decision=decision)
    if row["audience"] == "staff" and row.get("tool"):
        subject += f" ({row['tool']})"
    message["Subject"] = f"[airlock] {subject}"
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(localtime=False)
    host = sender.partition("@")[2] or "airlock.invalid"
    message["Message-ID"] = f"<{row['message_key']}@{host}>"
    message["X-Airlock-Idempotency-Key"] = str(row["message_key"])
    message["X-Airlock-Event"] = kind
    if row["audience"] == "customer":
        body = _CUSTOMER_TEXT.get(kind, "There is news in your conversation.").format(decision=decision)
    else:
        lines = [f"Event: {kind}", f"Conversation: {row.get('thread_id') or '-'}", f"Tool: {row.get('tool') or '-'}",
                 f"Audit event: #{_audit_ref(row)}"]
        lines += [f"{k.replace('_', ' ').capitalize()}: {v}" for k, v in sorted(data.items())]
        body = "\n".join(lines)
    message.set_content(body + "\n")
    return message


def _audit_ref(row: Mapping[str, Any]) -> str:
    """Return the announcing audit event as ``seq`` (stream 0) or ``stream/seq``."""
    seq, stream = row.get("audit_seq"), row.get("audit_stream")
    if not seq:
        return "-"
    return f"{stream}/{seq}" if stream else str(seq)


def webhook_body(row: Mapping[str, Any]) -> bytes:
    """Return the JSON body POSTed for an outbox row."""
    created = row.get("created_at")
    return json.dumps({
        "id": row["message_key"], "kind": row["kind"], "thread_id": row.get("thread_id"), "tool": row.get("tool"),
        "audit_seq": row.get("audit_seq"), "audit_stream": row.get("audit_stream"),
        "created_at": created.isoformat() if created is not None else None,
        "data": dict(row.get("payload") or {}),
    }, sort_keys=True, separators=(",", ":"), default=str).encode()


# -- transports ---------------------------------------------------------------------------------
class SmtpTransport:
    """Send one e-mail per call over SMTP (STARTTLS, implicit TLS or, to loopback only, plain)."""

    def __init__(self, settings: NotifySettings) -> None:
        self._s = settings

    def send(self, message: EmailMessage) -> None:
        """Send ``message``; raise DeliveryError (permanent for a 5xx refusal)."""
        s = self._s
        assert s.smtp_host is not None
        context = ssl.create_default_context()
        try:
            client: smtplib.SMTP
            if s.smtp_tls == "ssl":
                client = smtplib.SMTP_SSL(s.smtp_host, s.port, timeout=s.timeout_s, context=context)
            else:
                client = smtplib.SMTP(s.smtp_host, s.port, timeout=s.timeout_s)
            with client:
                if s.smtp_tls == "starttls":
                    client.starttls(context=context)
                if s.smtp_user:
                    client.login(s.smtp_user, s.smtp_password or "")
                client.send_message(message)
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(f"SMTP {exc.smtp_code}: {_text(exc.smtp_error)}",
                                permanent=500 <= exc.smtp_code < 600) from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"SMTP refused the recipients ({len(exc.recipients)})", permanent=True) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP: {type(exc).__name__}: {_text(str(exc))}") from None


class WebhookTransport:
    """POST one JSON body per call; 2xx is delivered, 4xx (but 408/425/429) is permanent."""

    def __init__(self, settings: NotifySettings, client: httpx.Client | None = None) -> None:
        self._s = settings
        self._client = client or httpx.Client(timeout=settings.timeout_s, follow_redirects=False)

    def send(self, row: Mapping[str, Any]) -> None:
        """Deliver ``row``; raise DeliveryError otherwise."""
        s = self._s
        assert s.webhook_url is not None
        body = webhook_body(row)
        headers = {"Content-Type": "application/json", "Idempotency-Key": str(row["message_key"]),
                   "X-Airlock-Event": str(row["kind"]), "User-Agent": "airlock-outbox/1"}
        if s.webhook_secret:
            mac = hmac.new(s.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
            headers["X-Airlock-Signature"] = f"sha256={mac}"
        try:
            response = self._client.post(s.webhook_url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            # The exception text may carry the URL (and a token in its query): name the type only.
            raise DeliveryError(f"webhook {redact_url(s.webhook_url)}: {type(exc).__name__}") from None
        if 200 <= response.status_code < 300:
            return
        permanent = 400 <= response.status_code < 500 and response.status_code not in (408, 425, 429)
        raise DeliveryError(f"webhook {redact_url(s.webhook_url)}: HTTP {response.status_code}", permanent=permanent)

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()


def _text(value: object) -> str:
    text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return " ".join(text.split())[:300]
