"""Domain tools and their backends, one sub-package per domain (``tools.airline`` first)."""

__all__: list[str] = []
