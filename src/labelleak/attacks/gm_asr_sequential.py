"""The former, run-after-run gradients-matching reconstruction on an ASR decoder, kept as a reference.

Each run is its own :func:`labelleak.attacks.gm.match_gradients` (torch's Adam, halving schedule,
stop on an unchanged transcript), a double backward through
:func:`~labelleak.attacks.gm_asr_objective.soft_label_gradients` a step. benchmarks/bench_gm.py and
the tests compare the batched reconstruction (:mod:`labelleak.attacks.gm_asr_batched`) with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from labelleak.attacks.gm_asr_objective import soft_label_gradients
from labelleak.attacks.gm_asr_runs import PAPER_DEFAULTS, Run, decode_rows, finished, initial_variables, problem, rounded


def reconstruct_sequential(model, decoder_update: Mapping[str, np.ndarray], num_positions: int, *,
                           bow: Sequence[int] | None = None, runs: int = 1, seed: int = 0,
                           lr: float = PAPER_DEFAULTS["lr"], halve_every: int = PAPER_DEFAULTS["halve_every"],
                           min_lr: float = PAPER_DEFAULTS["min_lr"], patience: int = PAPER_DEFAULTS["patience"],
                           max_steps: int = PAPER_DEFAULTS["max_steps"],
                           reg_weight: float = PAPER_DEFAULTS["reg_weight"], context_scale: float = 0.1) -> list[Run]:
    """The former implementation, kept as the reference of benchmarks/bench_gm.py and the tests.

    One run after the other, each step a double backward through :func:`soft_label_gradients`
    with :func:`labelleak.attacks.gm.match_gradients` (torch's Adam, halving schedule, stop on an
    unchanged transcript). The same starts, target and runs as
    :func:`~labelleak.attacks.gm_asr_batched.reconstruct` (:mod:`labelleak.attacks.gm_asr_runs`).
    """
    import torch

    from labelleak.attacks.gm import match_gradients

    S = int(num_positions)
    prob = problem(model, decoder_update, bow)
    device, columns, K, scale = prob.device, prob.columns, prob.num_columns, prob.scale
    for p in prob.params:
        p.requires_grad_(True)
    col_idx = None if columns is None else torch.tensor(columns, dtype=torch.int64, device=device)
    results = []
    for r in range(runs):
        A, P = (t.to(device) for t in initial_variables(S, K, model.context_dim, seed, r, context_scale))

        def grads(A=A, P=P):
            return soft_label_gradients(model, A, P, col_idx, scale=scale, create_graph=True)

        res = match_gradients(
            grads, [A, P], prob.target, steps=max_steps, lr=lr, halve_every=halve_every, min_lr=min_lr,
            penalty=lambda P=P: (P.sum(dim=1) - 1).abs().sum(), penalty_weight=reg_weight,
            decode=lambda P=P: decode_rows(P.detach(), columns), patience=patience)
        results.append(finished(list(res.decoded), res.distance, prob.norm2, int(res.steps),
                                [rounded(h) for h in res.history], "patience" if res.steps < max_steps else ""))
    return results
