"""The studies, one module per paper table or figure (:class:`~labelleak.studies.base.Study`).

Migrated so far: the label-attack family (idlg_table, ilrg_table, geng_table, leaderboard,
fl_rounds, counts_by_stage). Tables 1-5, Figure 2, the defense matrix and utility are still laid
out by :mod:`labelleak.jobs.tables` and :mod:`labelleak.reports`.
"""

from labelleak.studies import counts_by_stage, fl_rounds, geng_table, idlg_table, ilrg_table, leaderboard  # noqa: F401
from labelleak.studies.base import STUDIES, Study

__all__ = ["STUDIES", "Study"]
