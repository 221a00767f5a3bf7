"""Accounts for the Gradio app: a YAML file of users with PBKDF2 password hashes and roles.

The file (``AIRLOCK_ACCOUNTS``, default the served domain's demo file, ``DomainPlugin.demo_accounts``,
:data:`DEMO_ACCOUNTS_PATH` for the configured domain) looks like::

    accounts:
      - username: sam
        password_hash: "pbkdf2_sha256$600000$<salt_b64>$<hash_b64>"
        roles: [reviewer, supervisor]
      - username: jane_doe_1234
        password_hash: "pbkdf2_sha256$600000$..."
        roles: [customer]
        customer_id: jane_doe_1234

A role is ``customer``, ``reviewer`` or an assignee role that escalations name (``supervisor``
...). A bad file fails with the file, the line and the reason. ``airlock accounts hash`` prints
a hash for a new password; the demo file's passwords are public, so the app refuses to listen
on a non-loopback address unless ``AIRLOCK_ACCOUNTS`` names a file of your own.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import getpass
import hashlib
import hmac
import ipaddress
import os
import re
import secrets
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from graph.errors import AirlockError
from graph.plugins import load_plugin

__all__ = [
    "ACCOUNTS_ENV",
    "ALGORITHM",
    "CUSTOMER_ROLE",
    "DEFAULT_ITERATIONS",
    "DEMO_ACCOUNTS_PATH",
    "demo_accounts_path",
    "MIN_ITERATIONS",
    "REVIEWER_ROLE",
    "Account",
    "Accounts",
    "AccountsError",
    "UnsafeListenError",
    "accounts_main",
    "accounts_path",
    "check_listen_address",
    "hash_password",
    "is_loopback",
    "load_accounts",
    "verify_password",
]

ACCOUNTS_ENV = "AIRLOCK_ACCOUNTS"

def demo_accounts_path() -> Path | None:
    """Return the configured domain's demo accounts file (None: it has none)."""
    path = load_plugin().demo_accounts
    return path.resolve() if path is not None else None


#: The configured domain's demo accounts file, e.g. ``tools/airline/accounts.demo.yaml``.
DEMO_ACCOUNTS_PATH = demo_accounts_path()
ALGORITHM = "pbkdf2_sha256"
# OWASP's 2023 recommendation for PBKDF2-HMAC-SHA256; about 0.1 s per check on one core.
DEFAULT_ITERATIONS = 600_000
MIN_ITERATIONS = 200_000
# A file is trusted configuration, but an absurd count would turn every login into a stall.
MAX_ITERATIONS = 10_000_000
SALT_BYTES = 16
CUSTOMER_ROLE = "customer"
REVIEWER_ROLE = "reviewer"

_USERNAME_PATTERN = r"^[A-Za-z0-9_.@-]{1,64}$"
_ROLE_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"


# -- password hashing ---------------------------------------------------------------------------
def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def hash_password(password: str, *, iterations: int = DEFAULT_ITERATIONS) -> str:
    """Hash a password with PBKDF2-HMAC-SHA256 and a random salt.

    Args:
        password: The password (any non-empty text; encoded as UTF-8).
        iterations: The PBKDF2 iteration count (at least :data:`MIN_ITERATIONS`).

    Returns:
        ``"pbkdf2_sha256$<iterations>$<salt_b64>$<hash_b64>"``.

    Raises:
        ValueError: If the password is empty or the iteration count out of range.
    """
    if not password:
        raise ValueError("the password is empty")
    if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise ValueError(f"iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}")
    salt = secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return f"{ALGORITHM}${iterations}${_b64encode(salt)}${_b64encode(digest)}"


def _parse_hash(encoded: str) -> tuple[int, bytes, bytes]:
    """Split an encoded hash into (iterations, salt, digest); raise ValueError with the reason."""
    parts = encoded.split("$")
    if len(parts) != 4 or parts[0] != ALGORITHM:
        raise ValueError(f"expected '{ALGORITHM}$<iterations>$<salt_b64>$<hash_b64>'")
    try:
        iterations = int(parts[1])
    except ValueError:
        raise ValueError("the iteration count is not an integer") from None
    if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise ValueError(f"the iteration count must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}")
    try:
        salt, digest = _b64decode(parts[2]), _b64decode(parts[3])
    except (binascii.Error, ValueError):
        raise ValueError("the salt or the hash is not valid base64") from None
    if len(salt) < 8:
        raise ValueError("the salt is shorter than 8 bytes")
    if len(digest) != 32:
        raise ValueError("the hash is not 32 bytes (SHA-256)")
    return iterations, salt, digest


def verify_password(password: str, encoded: str) -> bool:
    """Check a password against an encoded hash in constant time (a malformed hash is False).

    Args:
        password: The password to check.
        encoded: A hash from :func:`hash_password`.

    Returns:
        True if the password matches.
    """
    try:
        iterations, salt, expected = _parse_hash(encoded)
    except ValueError:
        return False
    actual = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return hmac.compare_digest(actual, expected)


# -- the accounts file ----------------------------------------------------------------------------
class Account(BaseModel):
    """One user of the app."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str = Field(pattern=_USERNAME_PATTERN)
    password_hash: str = Field(repr=False)
    roles: tuple[str, ...] = Field(min_length=1)
    customer_id: str | None = Field(default=None, pattern=_USERNAME_PATTERN)

    @field_validator("password_hash")
    @classmethod
    def _valid_hash(cls, value: str) -> str:
        _parse_hash(value)  # raises ValueError with the reason
        return value

    @field_validator("roles")
    @classmethod
    def _valid_roles(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for role in value:
            if not re.match(_ROLE_PATTERN, role):
                raise ValueError(f"role {role!r} must be lower-case letters, digits, '_' or '-'")
        if len(set(value)) != len(value):
            raise ValueError("a role is listed twice")
        return value

    @model_validator(mode="after")
    def _customer_profile(self) -> Account:
        if CUSTOMER_ROLE in self.roles and not self.customer_id:
            raise ValueError("an account with the customer role needs a customer_id")
        if self.customer_id and CUSTOMER_ROLE not in self.roles:
            raise ValueError("customer_id is only for accounts with the customer role")
        return self

    @property
    def is_customer(self) -> bool:
        """Return whether the account may chat as a customer."""
        return CUSTOMER_ROLE in self.roles and self.customer_id is not None

    @property
    def is_reviewer(self) -> bool:
        """Return whether the account may open the reviewer inbox and the audit log."""
        return REVIEWER_ROLE in self.roles


class _AccountsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    demo: bool = False
    accounts: list[Account] = Field(min_length=1)


class AccountsError(AirlockError, ValueError):
    """An accounts file is missing or invalid; the message names the file, line and reason."""

    def __init__(self, path: Path | str, line: int | None, reason: str) -> None:
        self.path = Path(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}:{line}" if line else str(self.path)
        super().__init__(f"{where}: {reason}")


def _node_line(root: yaml.Node | None, loc: Sequence[int | str]) -> int | None:
    """Return the 1-based line of the YAML node at ``loc`` (or of its deepest existing parent)."""
    node = root
    line = None if node is None else node.start_mark.line + 1
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    child = value
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
        if child is None:
            break
        node = child
        line = node.start_mark.line + 1
    return line


def _reason(error: Mapping[str, Any]) -> str:
    loc = ".".join(str(p) for p in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{loc}: {message}" if loc else message


@dataclass(frozen=True, slots=True)
class Accounts:
    """The loaded accounts, looked up by username."""

    path: Path
    accounts: Mapping[str, Account]
    is_demo: bool = False

    def get(self, username: str | None) -> Account | None:
        """Return the account of a signed-in username, or None."""
        if not username:
            return None
        return self.accounts.get(username)

    def authenticate(self, username: str, password: str) -> Account | None:
        """Return the account if the password is right, else None.

        An unknown username costs the same hashing time as a wrong password, so response
        times do not reveal which usernames exist.

        Args:
            username: The username as typed.
            password: The password as typed.

        Returns:
            The account, or None.
        """
        account = self.accounts.get(username)
        if account is None:
            verify_password(password, _dummy_hash())
            return None
        return account if verify_password(password, account.password_hash) else None


_DUMMY: list[str] = []


def _dummy_hash() -> str:
    if not _DUMMY:
        _DUMMY.append(hash_password(secrets.token_urlsafe(16)))
    return _DUMMY[0]


def load_accounts(path: Path | str) -> Accounts:
    """Load and validate an accounts file.

    Args:
        path: The YAML file.

    Returns:
        The accounts.

    Raises:
        AccountsError: If the file is missing, not YAML, or fails validation (with the line).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AccountsError(path, None, "no such file (set AIRLOCK_ACCOUNTS to an accounts file)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AccountsError(path, None, f"cannot read the file: {exc}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise AccountsError(path, line, f"not valid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise AccountsError(path, None, f"not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise AccountsError(path, 1, "expected a mapping with an 'accounts' list")
    try:
        parsed = _AccountsFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise AccountsError(path, _node_line(root, first["loc"]), _reason(first)) from None
    by_name: dict[str, Account] = {}
    for index, account in enumerate(parsed.accounts):
        if account.username in by_name:
            line = _node_line(root, ("accounts", index, "username"))
            reason = f"accounts.{index}.username: {account.username!r} is listed twice"
            raise AccountsError(path, line, reason)
        by_name[account.username] = account
    is_demo = parsed.demo or path.resolve() == demo_accounts_path()
    return Accounts(path=path, accounts=by_name, is_demo=is_demo)


def accounts_path(environ: Mapping[str, str] | None = None) -> Path:
    """Return the accounts file: ``AIRLOCK_ACCOUNTS`` or the served domain's demo file.

    Raises:
        AccountsError: Neither is there (a domain without demo accounts).
    """
    env = os.environ if environ is None else environ
    value = (env.get(ACCOUNTS_ENV) or "").strip()
    if value:
        return Path(value)
    demo = demo_accounts_path()
    if demo is None:
        raise AccountsError(ACCOUNTS_ENV, None, "the domain has no demo accounts: set AIRLOCK_ACCOUNTS to your file")
    return demo


# -- where the app may listen -------------------------------------------------------------------
class UnsafeListenError(AirlockError, RuntimeError):
    """The app was asked to listen on a public address without real accounts."""


def is_loopback(host: str) -> bool:
    """Return whether ``host`` is a loopback address (``localhost``, 127.0.0.0/8, ``::1``)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name may resolve anywhere: treat it as public


def check_listen_address(
    host: str, *, allow_remote: bool, environ: Mapping[str, str] | None = None
) -> Accounts:
    """Load the accounts and refuse a non-loopback host unless it is safe to listen there.

    Listening beyond loopback needs both ``--allow-remote`` and ``AIRLOCK_ACCOUNTS`` naming an
    accounts file that is not the demo file (whose passwords are published).

    Args:
        host: The address to bind.
        allow_remote: Whether the operator passed ``--allow-remote``.
        environ: The environment (default ``os.environ``).

    Returns:
        The accounts the app should use.

    Raises:
        UnsafeListenError: If the host is not loopback and the conditions are not met.
        AccountsError: If the accounts file is invalid.
    """
    env = os.environ if environ is None else environ
    accounts = load_accounts(accounts_path(env))
    if is_loopback(host):
        return accounts
    if not allow_remote:
        raise UnsafeListenError(
            f"refusing to listen on {host}: only loopback addresses are allowed by default; "
            "pass --allow-remote (and set AIRLOCK_ACCOUNTS to your own accounts file)"
        )
    if not (env.get(ACCOUNTS_ENV) or "").strip() or accounts.is_demo:
        raise UnsafeListenError(
            f"refusing to listen on {host}: the demo accounts have public passwords; set "
            f"{ACCOUNTS_ENV} to an accounts file of your own (hashes from `airlock accounts hash`)"
        )
    return accounts


# -- `airlock accounts` ---------------------------------------------------------------------------
def _read_password_stdin() -> str:
    line = sys.stdin.readline()
    return line.removesuffix("\n").removesuffix("\r")


def accounts_main(argv: Sequence[str] | None = None) -> int:
    """Run ``airlock accounts``: ``hash`` prints a password hash; ``check`` validates a file.

    Args:
        argv: The arguments after ``accounts``.

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(
        prog="airlock accounts",
        description="Manage the accounts file of the Gradio app (AIRLOCK_ACCOUNTS).",
    )
    sub = parser.add_subparsers(dest="accounts_command", required=True)
    hash_cmd = sub.add_parser("hash", help="print a PBKDF2 hash for a password (for password_hash)")
    hash_cmd.add_argument("--password-stdin", action="store_true",
                          help="read the password from the first line of stdin instead of prompting")
    hash_cmd.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS,
                          help=f"PBKDF2 iterations (default {DEFAULT_ITERATIONS}, minimum {MIN_ITERATIONS})")
    check_cmd = sub.add_parser("check", help="validate an accounts file")
    check_cmd.add_argument("file", nargs="?", help=f"the file (default: ${ACCOUNTS_ENV}, else the demo file)")
    args = parser.parse_args(list(argv) if argv is not None else None)

    if args.accounts_command == "check":
        path = Path(args.file) if args.file else accounts_path()
        try:
            accounts = load_accounts(path)
        except AccountsError as exc:
            print(f"airlock: {exc}", file=sys.stderr)
            return 1
        kind = " (demo file: loopback only)" if accounts.is_demo else ""
        print(f"{path}: ok ({len(accounts.accounts)} accounts){kind}")
        return 0

    if args.password_stdin:
        password = _read_password_stdin()
    else:
        try:
            password = getpass.getpass("Password: ")
            again = getpass.getpass("Repeat password: ")
        except (EOFError, KeyboardInterrupt):
            print("airlock: no password given", file=sys.stderr)
            return 1
        if password != again:
            print("airlock: the passwords do not match", file=sys.stderr)
            return 1
    try:
        print(hash_password(password, iterations=args.iterations))
    except ValueError as exc:
        print(f"airlock: {exc}", file=sys.stderr)
        return 1
    return 0
