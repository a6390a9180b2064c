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

Speed: :func:`reconstruct` runs all R runs of an utterance in one forward/backward per step (a
leading run dimension; per-run gradients in closed form,
:class:`~labelleak.attacks.gm_asr_objective._Batch`), with early stopping on the attacker-side
distance (``tol``, ``plateau``) and the distance of every step in :attr:`Run.history`.
:func:`reconstruct_sequential` is the former run-after-run implementation (benchmarks/bench_gm.py
compares them). Measured on the default config's model (stage 1k): the
free contexts of eq. 8 cannot reproduce the decoder-LSTM and embedding parts of the update, since
the real contexts depend on the decoder state through the attention: at the TRUE contexts and
labels the relative distance is about 2e-2 (projection part: 1e-14), so wrong transcripts can
have a lower distance than the right one and best-of-R selection is unreliable there.

Layout: this module registers the attacks; the objective (the observed update, the soft-label
gradients, the run-batched distance) is :mod:`labelleak.attacks.gm_asr_objective`, what every run
shares (options, starts, the normalised target, :class:`Run`) :mod:`labelleak.attacks.gm_asr_runs`,
the batched reconstruction :mod:`labelleak.attacks.gm_asr_batched` and the sequential reference
:mod:`labelleak.attacks.gm_asr_sequential`; their public names are importable from here too.
"""

from __future__ import annotations

from dataclasses import asdict

from labelleak.attacks.base import Prediction, register
from labelleak.attacks.gm_asr_batched import reconstruct
from labelleak.attacks.gm_asr_objective import EOS, SOS, soft_label_gradients
from labelleak.attacks.gm_asr_runs import (
    EXTRA_OPTIONS,
    MATCHES,
    OPTIMIZERS,
    PAPER_DEFAULTS,
    SCHEDULES,
    Run,
    decode_rows,
    initial_variables,
    run_seed,
)
from labelleak.attacks.gm_asr_sequential import reconstruct_sequential
from labelleak.data.wordpiece import SPECIAL_MAX_ID
from labelleak.errors import NotApplicable
from labelleak.updates.format import Observation

__all__ = ["EOS", "EXTRA_OPTIONS", "MATCHES", "OPTIMIZERS", "PAPER", "PAPER_DEFAULTS", "SCHEDULES", "SOS", "SPECIAL_MAX",
           "Run", "decode_rows", "gm_asr", "gm_bow", "initial_variables", "reconstruct", "reconstruct_sequential",
           "run_seed", "soft_label_gradients"]

PAPER = "Dang et al., Revealing and Protecting Labels in Distributed Training, NeurIPS 2021"
SPECIAL_MAX = SPECIAL_MAX_ID  # ids <= 2 (<unk>, <s>, </s>) are not words (the paper's report script)


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


def _options(lr, halve_every, min_lr, patience, max_steps, reg_weight, seed, extra) -> dict:
    unknown = sorted(set(extra) - set(EXTRA_OPTIONS))
    if unknown:
        raise TypeError(f"unknown gradients-matching options {unknown} (known: {sorted(EXTRA_OPTIONS)})")
    return dict(lr=lr, halve_every=halve_every, min_lr=min_lr, patience=patience, max_steps=max_steps,
                reg_weight=reg_weight, seed=seed, **extra)


@register("gm_asr", paper=f"{PAPER} (sec. 2.5.2: GM baseline after Zhu et al., NeurIPS 2019)",
          needs=("model", "decoder_update"))
def gm_asr(obs: Observation, model=None, decoder_update=None, num_labels: int | None = None, seed: int = 0,
           lr: float = PAPER_DEFAULTS["lr"], halve_every: int = PAPER_DEFAULTS["halve_every"],
           min_lr: float = PAPER_DEFAULTS["min_lr"], patience: int = PAPER_DEFAULTS["patience"],
           max_steps: int = PAPER_DEFAULTS["max_steps"],
           reg_weight: float = PAPER_DEFAULTS["reg_weight"], **extra) -> Prediction:
    """GM over the whole vocabulary: contexts and smooth labels matched to the decoder update (1 run)."""
    _check(obs, model, decoder_update)
    from labelleak.attacks.rlg import estimate_rank

    S = int(num_labels) if num_labels is not None else estimate_rank(obs.dW)
    results = reconstruct(model, decoder_update, S, bow=None, runs=1,
                          **_options(lr, halve_every, min_lr, patience, max_steps, reg_weight, seed, extra))
    num_variables = S * (model.context_dim + model.vocab_size)
    return _prediction(results, S, num_variables, {"rank_given": num_labels is not None})


@register("gm_bow", paper=f"{PAPER} (sec. 4.1, eq. 8: GM restricted to RLG's bag of words)",
          needs=("model", "decoder_update"))
def gm_bow(obs: Observation, model=None, decoder_update=None, num_labels: int | None = None, runs: int = 1,
           seed: int = 0, lr: float = PAPER_DEFAULTS["lr"], halve_every: int = PAPER_DEFAULTS["halve_every"],
           min_lr: float = PAPER_DEFAULTS["min_lr"], patience: int = PAPER_DEFAULTS["patience"],
           max_steps: int = PAPER_DEFAULTS["max_steps"],
           reg_weight: float = PAPER_DEFAULTS["reg_weight"], **extra) -> Prediction:
    """GM + BoW: smooth labels restricted to RLG's bag of words, best of ``runs`` by gradient distance."""
    _check(obs, model, decoder_update)
    from labelleak.attacks.rlg import reveal_labels

    bow = reveal_labels(obs.dW, num_labels)
    S = bow.num_labels
    results = reconstruct(model, decoder_update, S, bow=sorted(bow.labels), runs=runs,
                          **_options(lr, halve_every, min_lr, patience, max_steps, reg_weight, seed, extra))
    return _prediction(results, S, S * (model.context_dim + len(bow.labels)),
                       {"bow": sorted(bow.labels), "rank_given": num_labels is not None})
