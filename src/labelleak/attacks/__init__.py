"""Label attacks, one module per paper, registered by name (see :mod:`labelleak.attacks.base`)."""

from labelleak.attacks import rlg, yin  # noqa: F401  (import registers the attacks)
from labelleak.attacks.base import Attack, Prediction, get_attack, registry, run_attack

__all__ = ["Attack", "Prediction", "get_attack", "registry", "run_attack"]
