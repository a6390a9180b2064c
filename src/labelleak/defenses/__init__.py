"""Defenses against label leakage, one module per family, registered by name (see :mod:`.base`).

``apply(name, tensors, rng)`` transforms the update a client sends; DP-SGD (``dpsgd-C-sigma``)
instead changes how the update is computed (:func:`labelleak.defenses.dpsgd.dp_projection_update`).
"""

from labelleak.defenses import compression, dpsgd, noise  # noqa: F401  (import registers the families)
from labelleak.defenses.base import NAME_PATTERN, DefenseError, Family, Step, apply, compute_step, families, parse

__all__ = ["NAME_PATTERN", "DefenseError", "Family", "Step", "apply", "compute_step", "families", "parse"]
