"""The studies, one module per paper table or figure and per study of labelleak's own
(:class:`~labelleak.studies.base.Study`): what it renders from its scores, and its published values."""

from labelleak.studies import (  # noqa: F401  (import registers the studies)
    counts_by_stage,
    defense_matrix,
    figure2,
    fl_rounds,
    geng_table,
    idlg_table,
    ilrg_table,
    leaderboard,
    table1,
    table2,
    table3,
    table4,
    table5,
    utility,
)
from labelleak.studies.base import STUDIES, Study

__all__ = ["STUDIES", "Study"]
