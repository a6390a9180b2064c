"""Gradients matching on an ASR decoder update: the GM baseline (sec. 2.5.2) and GM + BoW (sec. 4.1, eq. 8).

The client's update for one utterance and one step is the gradient of the mean cross-entropy
w.r.t. the decoder weights (embedding, decoder LSTM, projection). The attacker optimises, with the
one gradients-matching core (:func:`labelleak.attacks.gm.match_gradients`):

* context vectors ``A`` (S, d_A) in place of the attention, so neither the audio nor its length T
  is needed (:meth:`~labelleak.models.asr.ListenAttendSpell.decode_with_contexts`);
* smooth labels ``P`` (S, C), or with the bag of words B revealed by RLG, ``P'`` (S, |B|) with
  every other column fixed at 0 (eq. 8). Previous-token embeddings: row 0 = E(<s>), row i =
  ``P_{i-1} @ E`` (the smooth-label embedding of sec. 4.1).

Objective: ``gradient_distance(dL_soft/dW_decoder, observed) / ||observed||^2 + lambda * R(P)``
with ``R(P) = sum_i |sum_k p_i^k - 1|`` (the paper's regulariser: rows of P sum to 1). The distance
is taken relative to the observed update's squared norm so that lambda means the same for every
model size and checkpoint (a trained model's update is orders of magnitude smaller than an
untrained one's); this rescaling does not change which run is best. S is RLG's rank estimate of the
projection update ``dW`` (option ``num_labels`` overrides it). The transcript is the argmax of each
row of P cut at the first </s>. Run r starts from seeded (seed, r) random one-hot labels (as the
reference code) and small random contexts; of R runs the one with the lowest final gradient
distance is kept (attacker-side, :func:`labelleak.attacks.gm.best_of`).

Defaults are the paper's (sec. 4.2): lr 0.05 halved every 4000 steps down to 0.005, stop once the
transcript is unchanged for 2000 steps, lambda = 1. Measured on small untrained models, lambda = 1
with this distance keeps the optimiser on the row sums and the transcript is not recovered, while
lambda = 0.01 recovers it: pass ``reg_weight`` from the config.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np

from labelleak.attacks.base import Prediction, register
from labelleak.errors import NotApplicable
from labelleak.updates.format import Observation

PAPER = "Dang et al., Revealing and Protecting Labels in Distributed Training, NeurIPS 2021"
SOS, EOS = 1, 2  # as labelleak.models.asr
SPECIAL_MAX = 2  # ids <= 2 (<unk>, <s>, </s>) are not words (the paper's report script)

#: Paper values (sec. 4.2). ``max_steps`` is a cap the paper does not state.
PAPER_DEFAULTS = dict(lr=0.05, halve_every=4000, min_lr=0.005, patience=2000, max_steps=100_000, reg_weight=1.0)


@dataclass(frozen=True)
class Run:
    """One reconstruction: decoded piece ids (without </s>), final gradient distance, steps taken."""

    transcript: list[int]
    distance: float  # squared distance to the observed decoder update (gm.gradient_distance)
    relative_distance: float  # the same divided by the observed update's squared norm
    steps: int


def run_seed(seed: int, run: int) -> int:
    """The torch seed of run ``run`` under base seed ``seed`` (derived from the pair, not seed + run)."""
    return int(np.random.SeedSequence([int(seed), int(run)]).generate_state(1, dtype=np.uint64)[0] >> 1)


def decode_rows(P, columns: Sequence[int] | None = None) -> list[int]:
    """Argmax piece id of each row of ``P`` (column k is piece ``columns[k]``), cut at the first </s>."""
    idx = P.argmax(dim=1).tolist()
    ids = [int(columns[k]) for k in idx] if columns is not None else [int(k) for k in idx]
    return ids[: ids.index(EOS)] if EOS in ids else ids


def _target(model, decoder_update: Mapping[str, np.ndarray], device):
    """The observed update as tensors in the order of ``model.decoder_parameters()``.

    A 2-D array stored transposed (the update file's (d, C) orientation) is turned back.
    """
    import torch

    params = model.decoder_parameters()
    missing = sorted(set(params) - set(decoder_update))
    if missing:
        raise NotApplicable(f"the decoder update lacks {', '.join(missing)}")
    target = []
    for name, p in params.items():
        t = torch.as_tensor(np.asarray(decoder_update[name]), dtype=p.dtype)
        if t.shape != p.shape and t.ndim == 2 and t.T.shape == p.shape:
            t = t.T.contiguous()
        if t.shape != p.shape:
            raise NotApplicable(f"decoder update {name!r} has shape {tuple(t.shape)}, the model {tuple(p.shape)}")
        target.append(t.to(device))
    return [params[n] for n in params], target


def soft_label_gradients(model, contexts, P, columns=None, *, scale: float = 1.0, create_graph: bool = False):
    """Gradients of eq. 7 w.r.t. ``model.decoder_parameters()`` (in order) for contexts (S, d_A) and labels P.

    ``P`` is (S, C), or (S, |B|) over the piece ids ``columns`` (a 1-D int tensor) with every other
    column 0 (eq. 8). Row 0 of the previous-token embeddings is E(<s>), row i is ``P_{i-1} @ E``.
    At the true contexts and one-hot labels this is the client's gradient (the loss divided by
    ``scale``, which divides every gradient at no cost per parameter).
    """
    import torch

    from labelleak.models.asr import soft_label_loss

    E = model.embedding.weight
    S, V = P.shape[0], E.shape[0]
    E_cols = E if columns is None else E[columns]
    prev = torch.cat([E[SOS : SOS + 1], P[:-1] @ E_cols])
    logits = model.decode_with_contexts(prev, contexts)
    full = P if columns is None else P.new_zeros(S, V).index_copy(1, columns, P)
    params = list(model.decoder_parameters().values())
    return torch.autograd.grad(soft_label_loss(logits, full) / scale, params, create_graph=create_graph)


def reconstruct(model, decoder_update: Mapping[str, np.ndarray], num_positions: int, *,
                bow: Sequence[int] | None = None, runs: int = 1, seed: int = 0,
                lr: float = PAPER_DEFAULTS["lr"], halve_every: int = PAPER_DEFAULTS["halve_every"],
                min_lr: float = PAPER_DEFAULTS["min_lr"], patience: int = PAPER_DEFAULTS["patience"],
                max_steps: int = PAPER_DEFAULTS["max_steps"], reg_weight: float = PAPER_DEFAULTS["reg_weight"],
                context_scale: float = 0.1) -> list[Run]:
    """``runs`` GM reconstructions (eq. 8) of S = ``num_positions`` decoder positions, in run order.

    ``bow`` restricts the smooth labels to those piece ids (GM + BoW); ``None`` optimises over the
    whole vocabulary (the GM baseline). ``context_scale`` is the std of the initial contexts
    (attention outputs are averages of LSTM outputs, well inside (-1, 1)). Runs on the model's device.
    """
    import torch

    from labelleak.attacks.gm import match_gradients

    S = int(num_positions)
    if S < 1:
        raise NotApplicable("no decoder positions to reconstruct (S = 0)")
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    E = model.embedding.weight
    device, V = E.device, E.shape[0]
    plist, target = _target(model, decoder_update, device)
    norm2 = float(sum((t.double() ** 2).sum() for t in target))
    if not norm2 > 0:
        raise NotApplicable("the decoder update is zero")
    scale = norm2 ** 0.5
    target = [t / scale for t in target]  # relative distance: see the module docstring
    for p in plist:
        p.requires_grad_(True)
    columns = None if bow is None else sorted({int(c) for c in bow})
    if columns is not None and (not columns or min(columns) < 0 or max(columns) >= V):
        raise NotApplicable(f"bag of words must be non-empty piece ids in [0, {V})")
    col_idx = None if columns is None else torch.tensor(columns, dtype=torch.int64, device=device)
    K = V if columns is None else len(columns)
    results = []
    for r in range(runs):
        gen = torch.Generator().manual_seed(run_seed(seed, r))
        A = (torch.randn(S, model.context_dim, generator=gen) * context_scale).to(device)
        P = torch.zeros(S, K)
        P[torch.arange(S), torch.randint(0, K, (S,), generator=gen)] = 1.0  # random one-hot rows
        P = P.to(device)

        def grads(A=A, P=P):
            return soft_label_gradients(model, A, P, col_idx, scale=scale, create_graph=True)

        res = match_gradients(
            grads, [A, P], target, steps=max_steps, lr=lr, halve_every=halve_every, min_lr=min_lr,
            penalty=lambda P=P: (P.sum(dim=1) - 1).abs().sum(), penalty_weight=reg_weight,
            decode=lambda P=P: decode_rows(P.detach(), columns), patience=patience)
        results.append(Run(list(res.decoded), res.distance * norm2, res.distance, int(res.steps)))
    return results


def _check(obs: Observation, model, decoder_update) -> None:
    """NotApplicable unless this is one utterance, one step, with the model and its decoder update."""
    if (obs.batch_size or 1) != 1 or (obs.steps or 1) != 1:
        raise NotApplicable(f"GM on the decoder needs a single-utterance 1-step update, "
                            f"got batch_size {obs.batch_size} and steps {obs.steps}")
    if model is None or decoder_update is None:
        raise NotApplicable("GM on the decoder needs the model and the decoder update")
    if not hasattr(model, "decode_with_contexts"):
        raise NotApplicable(f"GM on the decoder needs an attention ASR model, got {type(model).__name__}")


def _prediction(results: list[Run], S: int, num_variables: int, info: dict) -> Prediction:
    """Best run (lowest distance) as the answer; every run kept in run order for 1-run vs best-of-R."""
    from labelleak.attacks.gm import best_of

    best = best_of(results)
    return Prediction(
        labels=frozenset(c for c in best.transcript if c > SPECIAL_MAX),
        num_labels=S,
        info={"transcript": best.transcript, "distance": best.distance, "relative_distance": best.relative_distance,
              "steps": best.steps, "num_variables": num_variables, **info,
              "runs": [{k: v for k, v in asdict(r).items() if k != "relative_distance"} for r in results]},
    )


def _options(lr, halve_every, min_lr, patience, max_steps, reg_weight, seed) -> dict:
    return dict(lr=lr, halve_every=halve_every, min_lr=min_lr, patience=patience, max_steps=max_steps,
                reg_weight=reg_weight, seed=seed)


@register("gm_asr", paper=f"{PAPER} (sec. 2.5.2: GM baseline after Zhu et al., NeurIPS 2019)",
          needs=("model", "decoder_update"))
def gm_asr(obs: Observation, model=None, decoder_update=None, num_labels: int | None = None, seed: int = 0,
           lr: float = PAPER_DEFAULTS["lr"], halve_every: int = PAPER_DEFAULTS["halve_every"],
           min_lr: float = PAPER_DEFAULTS["min_lr"], patience: int = PAPER_DEFAULTS["patience"],
           max_steps: int = PAPER_DEFAULTS["max_steps"],
           reg_weight: float = PAPER_DEFAULTS["reg_weight"]) -> Prediction:
    """GM over the whole vocabulary: contexts and smooth labels matched to the decoder update (1 run)."""
    _check(obs, model, decoder_update)
    from labelleak.attacks.rlg import estimate_rank

    S = int(num_labels) if num_labels is not None else estimate_rank(obs.dW)
    results = reconstruct(model, decoder_update, S, bow=None, runs=1,
                          **_options(lr, halve_every, min_lr, patience, max_steps, reg_weight, seed))
    num_variables = S * (model.context_dim + model.vocab_size)
    return _prediction(results, S, num_variables, {"rank_given": num_labels is not None})


@register("gm_bow", paper=f"{PAPER} (sec. 4.1, eq. 8: GM restricted to RLG's bag of words)",
          needs=("model", "decoder_update"))
def gm_bow(obs: Observation, model=None, decoder_update=None, num_labels: int | None = None, runs: int = 1,
           seed: int = 0, lr: float = PAPER_DEFAULTS["lr"], halve_every: int = PAPER_DEFAULTS["halve_every"],
           min_lr: float = PAPER_DEFAULTS["min_lr"], patience: int = PAPER_DEFAULTS["patience"],
           max_steps: int = PAPER_DEFAULTS["max_steps"],
           reg_weight: float = PAPER_DEFAULTS["reg_weight"]) -> Prediction:
    """GM + BoW: smooth labels restricted to RLG's bag of words, best of ``runs`` by gradient distance."""
    _check(obs, model, decoder_update)
    from labelleak.attacks.rlg import reveal_labels

    bow = reveal_labels(obs.dW, num_labels)
    S = bow.num_labels
    results = reconstruct(model, decoder_update, S, bow=sorted(bow.labels), runs=runs,
                          **_options(lr, halve_every, min_lr, patience, max_steps, reg_weight, seed))
    return _prediction(results, S, S * (model.context_dim + len(bow.labels)),
                       {"bow": sorted(bow.labels), "rank_given": num_labels is not None})
