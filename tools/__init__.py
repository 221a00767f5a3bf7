"""Domain tools and their backends, one sub-package per domain (``tools.airline`` first).

The public surface is the domain sub-packages themselves: :mod:`graph.plugins` loads one by
name (``tools.<name>.plugin()``), so this module imports none of them.
"""

__all__ = ["airline", "retail"]
