"""The audit key: a secret kept outside the database that the audit chain and its anchors are keyed with.

Without it, someone who can write to the database can still delete or rewrite audit rows,
but cannot produce hashes that :meth:`nodes.audit.AuditLog.verify` accepts.

Key management (see :func:`load_audit_key`):

1. ``AIRLOCK_AUDIT_KEY``: base64 of exactly 32 random bytes, e.g.
   ``python -c "import base64, os; print(base64.b64encode(os.urandom(32)).decode())"``.
2. Otherwise a key file: ``AIRLOCK_AUDIT_KEY_FILE``, or ``<data_dir>/audit.key`` next to the
   vault key. The embedded demo (no ``DATABASE_URL``) generates it once with mode 0600; with an
   external database the key is required, because every process that writes the log must share
   it and a verifier needs the same one.

Only subkeys derived with HKDF-SHA256 are used: one for the chain, one for the anchors, and a
short key id stored with every event so a wrong key is told apart from a rewritten log.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from graph.errors import AirlockError
from nodes.guards.vault import VaultKeyError, create_key_file, decode_key, read_key_file

__all__ = [
    "APP_ROLE",
    "DEFAULT_KEY_FILENAME",
    "KEY_ENV_VAR",
    "KEY_FILE_ENV_VAR",
    "AuditKey",
    "AuditKeyError",
    "load_audit_key",
]

log = logging.getLogger(__name__)

KEY_ENV_VAR = "AIRLOCK_AUDIT_KEY"
KEY_FILE_ENV_VAR = "AIRLOCK_AUDIT_KEY_FILE"
DEFAULT_KEY_FILENAME = "audit.key"
#: The database role the app runs as after migrating (created by migration 010): it may only
#: INSERT and SELECT the audit tables, and owns nothing.
APP_ROLE = "airlock_app"
_KEYGEN_HINT = (
    'generate one with: python -c "import base64, os; print(base64.b64encode(os.urandom(32)).decode())"'
)


class AuditKeyError(AirlockError, ValueError):
    """Raised for a missing, malformed or unsafe audit key (the message never shows the key)."""


def _hkdf(key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(key)


class AuditKey:
    """Subkeys derived from the audit key; the key itself is not kept.

    Attributes:
        chain_key: HMAC-SHA256 key of each event's hash.
        anchor_key: HMAC-SHA256 key of the anchors and export headers.
        key_id: 16 hex characters that name the key without revealing it.
    """

    __slots__ = ("anchor_key", "chain_key", "key_id")

    def __init__(self, raw: bytes) -> None:
        if len(raw) != 32:
            raise AuditKeyError("the audit key must be 32 bytes")
        self.chain_key = _hkdf(raw, b"airlock/audit/chain/hmac-sha256/v1")
        self.anchor_key = _hkdf(raw, b"airlock/audit/anchor/hmac-sha256/v1")
        self.key_id = _hkdf(raw, b"airlock/audit/key-id/v1")[:8].hex()

    def __repr__(self) -> str:
        return f"AuditKey(key_id={self.key_id!r})"


def load_audit_key(
    *, data_dir: Path | str | None = None, generate: bool = False, environ: Mapping[str, str] | None = None,
) -> AuditKey:
    """Return the audit key from the environment or its key file.

    Args:
        data_dir: Directory of the default key file (``AIRLOCK_DATA_DIR`` or ``.data`` when None).
        generate: Create ``<data_dir>/audit.key`` (mode 0600) when no key is configured: the
            embedded demo does; a deployment on an external database does not.
        environ: Environment to read instead of ``os.environ``.

    Returns:
        The derived keys.

    Raises:
        AuditKeyError: No key is configured (and ``generate`` is False), or it is malformed, or
            the key file is readable by group or others.
    """
    env = os.environ if environ is None else environ
    try:
        if env.get(KEY_ENV_VAR):
            return AuditKey(decode_key(env[KEY_ENV_VAR], source=KEY_ENV_VAR))
        if env.get(KEY_FILE_ENV_VAR):
            key_path = Path(env[KEY_FILE_ENV_VAR])
        else:
            from graph.db import default_data_dir  # the app's one data directory, as for the vault key

            base = Path(data_dir) if data_dir is not None else default_data_dir(env)
            key_path = base / DEFAULT_KEY_FILENAME
        if not key_path.exists():
            if not generate or env.get(KEY_FILE_ENV_VAR):
                raise AuditKeyError(
                    f"no audit key: set {KEY_ENV_VAR} (base64 of 32 random bytes) or {KEY_FILE_ENV_VAR}, "
                    f"or put it in {key_path}; every process writing the audit log and every verifier needs "
                    f"the same key, kept outside the database; {_KEYGEN_HINT}"
                )
            create_key_file(key_path, what="audit", env_var=KEY_ENV_VAR)
        return AuditKey(read_key_file(key_path, what="audit"))
    except VaultKeyError as exc:  # decode_key's clear message, under this module's error type
        raise AuditKeyError(str(exc)) from None
