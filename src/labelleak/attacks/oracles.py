"""Method names of the config that run a registered attack with one experimenter-given option.

An oracle is stated in the tables: Table 3 of the paper runs RLG with the true number of target
positions S (``rlg_true_s``); ``rlg_official``, the released script, always gets it (gt_k: the number
of labels, repeats included). Their jobs take the truth file as a declared input.
"""

from __future__ import annotations

#: Method aliases that run a registered attack with one experimenter-given option (an oracle, stated in
#: the tables): Table 3 of the paper runs RLG with the true number of target positions S; rlg_official, the
#: released script, always gets it (gt_k: the number of labels, repeats included).
ORACLE_METHODS = {"rlg_true_s": ("rlg", "num_labels"), "rlg_official": ("rlg_official", "num_labels")}


def attack_name(method: str) -> str:
    """The registered attack behind a method name of the config (an oracle alias or the name itself)."""
    return ORACLE_METHODS.get(method, (method,))[0]
