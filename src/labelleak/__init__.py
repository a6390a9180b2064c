"""labelleak: label leakage from gradients, as a reproducible benchmark.

Data flows one way: data -> models -> updates -> (defenses) -> attacks -> metrics -> reports.
Each sub-package knows nothing of the ones to its right.
"""

__version__ = "0.1.0"
