"""Label attacks, one module per paper, registered by name (see :mod:`labelleak.attacks.base`)."""

from labelleak.attacks import rlg, yin  # noqa: F401  (import registers the attacks)
from labelleak.attacks.rlg import official  # noqa: F401  (RLG as the released script runs it)
from labelleak.attacks import dlg, geng, idlg, ilrg, llg  # noqa: F401  (label attacks of the seed papers)
from labelleak.attacks import gm_asr  # noqa: F401  (GM and GM + BoW on an ASR decoder update)
from labelleak.attacks import counts_lastlayer  # noqa: F401  (rlg_counts: ours, exact counts from the last layer)
from labelleak.attacks import dimitrov, rlu  # noqa: F401  (Dimitrov et al. FedAvg counts; RLU, Chen and Vikalo)
from labelleak.attacks.base import Attack, Prediction, get_attack, registry, run_attack

__all__ = ["Attack", "Prediction", "get_attack", "registry", "run_attack"]
