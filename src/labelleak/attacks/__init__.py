"""Label attacks, one module per paper, registered by name (see :mod:`labelleak.attacks.base`)."""

from labelleak.attacks import (  # noqa: F401  (import registers the attacks)  # noqa: F401  (label attacks of the seed papers)  # noqa: F401  (Dimitrov et al. FedAvg counts; RLU, Chen and Vikalo)
    counts_lastlayer,  # noqa: F401  (rlg_counts: ours, exact counts from the last layer)
    dimitrov,
    dlg,
    geng,
    gm_asr,  # noqa: F401  (GM and GM + BoW on an ASR decoder update)
    idlg,
    ilrg,
    llg,
    rlg,
    rlu,
    yin,
)
from labelleak.attacks.base import Attack, Prediction, get_attack, registry, run_attack
from labelleak.attacks.rlg import official  # noqa: F401  (RLG as the released script runs it)

__all__ = ["Attack", "Prediction", "get_attack", "registry", "run_attack"]
