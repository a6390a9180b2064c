"""The tolerances and search budgets of ``rlg_counts`` (:mod:`labelleak.attacks.counts_lastlayer`).

They are tuned together (the sample tolerance, the gaps, the budgets of the search, the peeling and
the refinement bear on one another), so they live in one place instead of next to each piece that
reads them.
"""

#: Counts are proven when the samples found reproduce dW and db to this relative residual.
PROVEN_TOL = 1e-6
#: A polished point is a sample when its per-sample residual is at most SAMPLE_NOISE_FACTOR times
#: the noise of dW (its first singular value past S, at least ARITH_NOISE * max(d, C) * eps * |dW|)
#: over the sample's own size |h| |g| / N, never above MAX_ACCEPT_TOL.
SAMPLE_NOISE_FACTOR = 30.0
ARITH_NOISE = 1.0
MAX_ACCEPT_TOL = 1e-3
#: A search point is polished when its residual (in the residual's spaces) is below this.
SEARCH_TOL = 1e-3
#: The residual of a K-step simulation of inexact samples is inexact: the refinement polishes its
#: search points up to this residual.
REFINE_SEARCH_TOL = 5e-2
#: A residual whose first left-out singular value is above this fraction of the last kept one has no
#: gap after the samples left: the search stops.
MAX_NOISE_RATIO = 1e-2
#: A step's samples are checked: the residual they leave must have a gap (first left-out over last
#: kept singular value below this) after the samples left; else the worst fit is dropped and banned,
#: MAX_BANNED times at most.
STEP_CHECK_RATIO = 1e-4
MAX_BANNED = 4
#: |g^T R^+ h / N - 1| at most this for a sample of the residual R (exactly 0 in exact arithmetic).
RANK_DROP_TOL = 1e-2
STARTS = 12  # seeded starts per class and round
ROUNDS = 12  # search rounds per step, at most
IDLE_ROUNDS = 2  # a step stops after this many rounds that find nothing
REFINE_ITERS = 8  # all-steps rounds, at most (when the steps one by one leave samples out)
LM_ITERS = 60
POLISH_ITERS = 200
REFINE_POLISH_ITERS = 60
#: Deflation radius, relative to the norm of the point deflated.
DEFLATION_RADIUS = 0.05
