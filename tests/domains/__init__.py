"""Domains that exist only for tests (see ``tests/domains/minimal``)."""
