"""Find the domain the engine serves: a package ``tools/<name>/`` with a ``plugin()`` function.

The engine never imports a domain by name. The domain is chosen by configuration:

1. ``AIRLOCK_DOMAIN`` (e.g. ``retail``). A value with a dot is a full module path
   (``tests.domains.minimal``): how a test, or a deployment with its own package, brings a
   domain without adding it under ``tools/``.
2. Else the ``domain:`` key of the policy file (``AIRLOCK_POLICY`` or the ``--policy`` given).
3. Else ``airline``.

The package's ``plugin()`` returns a :class:`graph.domain.DomainPlugin`.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import re
import threading
from collections.abc import Mapping
from pathlib import Path

import yaml

from graph.domain import DomainPlugin
from graph.errors import AirlockError

__all__ = [
    "DEFAULT_DOMAIN",
    "DOMAIN_ENV",
    "DomainConfigError",
    "UnknownDomainError",
    "available_domains",
    "load_plugin",
    "policy_domain",
    "resolve_domain_name",
]

DOMAIN_ENV = "AIRLOCK_DOMAIN"
DEFAULT_DOMAIN = "airline"
_PACKAGE = "tools"
_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
_MODULE_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
_LOCK = threading.Lock()
_CACHE: dict[str, DomainPlugin] = {}


class DomainConfigError(AirlockError, ValueError):
    """The configured domain cannot be used (a bad name, a package without ``plugin()``...)."""


class UnknownDomainError(DomainConfigError):
    """The configured domain does not exist; the message names the available ones."""


def available_domains() -> list[str]:
    """Return the names of the domain packages under ``tools/`` (sorted)."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return []
    return sorted(
        m.name for m in pkgutil.iter_modules(list(spec.submodule_search_locations))
        if m.ispkg and _NAME.fullmatch(m.name)
    )


def policy_domain(path: str | Path) -> str | None:
    """Return the ``domain:`` key of a policy file, or None (unreadable files are left to the policy loader)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None
    value = data.get("domain") if isinstance(data, dict) else None
    return value if isinstance(value, str) and value.strip() else None


def resolve_domain_name(
    *, policy_path: str | Path | None = None, environ: Mapping[str, str] | None = None,
) -> str:
    """Return the configured domain's name (see the module docstring for the order).

    Args:
        policy_path: The policy file in use, if the caller knows it; else ``AIRLOCK_POLICY``.
        environ: The environment (default ``os.environ``).

    Raises:
        DomainConfigError: ``AIRLOCK_DOMAIN`` and the policy's ``domain:`` disagree.
    """
    env = os.environ if environ is None else environ
    chosen = (env.get(DOMAIN_ENV) or "").strip() or None
    path = policy_path if policy_path is not None else (env.get("AIRLOCK_POLICY") or None)
    stated = policy_domain(path) if path else None
    if chosen and stated and _short(chosen) != _short(stated):
        raise DomainConfigError(
            f"{DOMAIN_ENV}={chosen!r} but the policy {path} says domain: {stated!r}; make them agree"
        )
    return chosen or stated or DEFAULT_DOMAIN


def load_plugin(
    name: str | None = None, *, policy_path: str | Path | None = None, environ: Mapping[str, str] | None = None,
) -> DomainPlugin:
    """Import the domain package and return its plugin (cached per name).

    Args:
        name: The domain (a name under ``tools/`` or a dotted module path); None: the
            configured one (:func:`resolve_domain_name`).
        policy_path: The policy file in use (for its ``domain:`` key), when ``name`` is None.
        environ: The environment, when ``name`` is None.

    Raises:
        UnknownDomainError: No such domain (the message lists the available ones).
        DomainConfigError: The package has no valid ``plugin()``.
    """
    name = name or resolve_domain_name(policy_path=policy_path, environ=environ)
    with _LOCK:
        cached = _CACHE.get(name)
        if cached is not None:
            return cached
        plugin = _import(name)
        _CACHE[name] = plugin
        return plugin


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _unknown(name: str) -> UnknownDomainError:
    choices = ", ".join(available_domains()) or "none"
    return UnknownDomainError(
        f"unknown domain {name!r} ({DOMAIN_ENV} or the policy's domain:); available domains: {choices}"
    )


def _import(name: str) -> DomainPlugin:
    if _NAME.fullmatch(name):
        if name not in available_domains():
            raise _unknown(name)
        module_name = f"{_PACKAGE}.{name}"
    elif _MODULE_PATH.fullmatch(name):
        module_name = name
    else:
        raise _unknown(name)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise _unknown(name) from None
        raise
    factory = getattr(module, "plugin", None)
    if not callable(factory):
        raise DomainConfigError(f"the domain package {module_name} has no plugin() function")
    plugin = factory()
    if not isinstance(plugin, DomainPlugin):
        raise DomainConfigError(f"{module_name}.plugin() returned {type(plugin).__name__}, not a DomainPlugin")
    if plugin.name != _short(name):
        raise DomainConfigError(f"{module_name}.plugin() names itself {plugin.name!r}, not {_short(name)!r}")
    problem = _problem(plugin)
    if problem:
        raise DomainConfigError(f"{module_name}.plugin(): {problem}")
    return plugin


def _problem(plugin: DomainPlugin) -> str | None:
    """Return what is wrong with a plugin's declarations, or None."""
    if not _NAME.fullmatch(plugin.name):
        return f"the name {plugin.name!r} must match {_NAME.pattern}"
    if not plugin.tools:
        return "it declares no tools"
    if plugin.output.handoff_tool is not None and plugin.output.handoff_tool not in plugin.tools:
        return f"the hand-off tool {plugin.output.handoff_tool!r} is not one of its tools"
    if not plugin.policy_path.is_file():
        return f"its default policy {plugin.policy_path} does not exist"
    if plugin.migrations is not None and not plugin.migrations.is_dir():
        return f"its migrations folder {plugin.migrations} does not exist"
    if plugin.demo_accounts is not None and not plugin.demo_accounts.is_file():
        return f"its demo accounts file {plugin.demo_accounts} does not exist"
    if not plugin.system_prompt.strip():
        return "its system prompt is empty"
    return None
