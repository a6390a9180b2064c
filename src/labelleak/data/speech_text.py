"""Generated word-piece utterances and their batch/step groupings, for runs without LibriSpeech.

The default config must run with no data files, yet its label sets should look like the paper's:
:func:`generated_utterances` draws utterance lengths (in pieces) from :data:`PAPER_LENGTHS`, the
histogram of the paper's 402 attacked utterances, and pieces from a Zipf-like law over the
vocabulary's id order (lingvo's file is sorted by merge score, roughly by frequency), tuned so
that about 14% of utterances repeat a piece, as the real ones do (15%).
:func:`group_utterances` forms updates of ``n`` utterances x ``k`` local steps the way the paper's
grouping files do: each utterance used once per pass over the ids, in random order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from labelleak.data.wordpiece import WORD_START, Vocabulary

#: Length in pieces -> number of utterances, for the ids of the paper's
#: ``paper-samples/test-sorted_less_50.ids`` (402 utterances), transcripts from
#: ``test-{clean,other}.trans.txt`` encoded by :meth:`Vocabulary.encode` (greedy longest-match)
#: with lingvo's ``wpm_16k_librispeech.vocab``. Mean 6.7 pieces. tests/test_speech_data.py
#: re-measures it when ../shared/data is present.
PAPER_LENGTHS: Mapping[int, int] = {1: 4, 2: 15, 3: 31, 4: 50, 5: 40, 6: 49, 7: 48, 8: 43, 9: 57,
                                    10: 35, 11: 20, 12: 6, 13: 4}
#: Piece of rank r (0 = lowest usable id) has probability proportional to 1 / (r + OFFSET)^EXPONENT.
ZIPF_EXPONENT, ZIPF_OFFSET = 1.0, 2.0

# Domain tags that keep the seed streams of lengths/tokens and of groupings apart.
_UTTERANCES, _GROUPS = 0x5554, 0x4752


def label_pieces(vocab: Vocabulary) -> np.ndarray:
    """Ids a transcript's encoding can hold: no ``<...>`` marker, no bare ``▁`` (int64, id order)."""
    bad = set(vocab.special_ids) | {vocab.index.get(WORD_START, -1)}
    return np.array([i for i in range(len(vocab)) if i not in bad], dtype=np.int64)


def length_probabilities(min_pieces: int, max_pieces: int) -> tuple[np.ndarray, np.ndarray]:
    """(lengths, probabilities): :data:`PAPER_LENGTHS` restricted to ``[min_pieces, max_pieces]``.

    Uniform over the range when the histogram has no mass there.
    """
    if not 1 <= min_pieces <= max_pieces:
        raise ValueError(f"need 1 <= min_pieces <= max_pieces, got {min_pieces}, {max_pieces}")
    lengths = np.arange(min_pieces, max_pieces + 1)
    weights = np.array([PAPER_LENGTHS.get(int(n), 0) for n in lengths], dtype=float)
    if weights.sum() == 0:
        weights[:] = 1.0
    return lengths, weights / weights.sum()


def generated_utterances(vocab: Vocabulary, count: int, seed: int, min_pieces: int = 1,
                         max_pieces: int = 15, prefix: str = "gen") -> list[tuple[str, list[int]]]:
    """``count`` made-up utterances ``(f"{prefix}-{i:06d}", piece ids)``; a pure function of the args.

    Lengths follow :data:`PAPER_LENGTHS` (within ``[min_pieces, max_pieces]``), pieces the Zipf law
    over :func:`label_pieces`. Ids carry no ``<s>`` / ``</s>``.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    usable = label_pieces(vocab)
    weights = 1.0 / (np.arange(usable.size) + ZIPF_OFFSET) ** ZIPF_EXPONENT
    lengths, probs = length_probabilities(min_pieces, max_pieces)
    rng = np.random.default_rng([seed, _UTTERANCES])
    sizes = rng.choice(lengths, size=count, p=probs)
    tokens = usable[rng.choice(usable.size, size=int(sizes.sum()), p=weights / weights.sum())]
    ends = np.cumsum(sizes)
    return [(f"{prefix}-{i:06d}", tokens[end - n:end].tolist()) for i, (n, end) in enumerate(zip(sizes, ends))]


def group_utterances(ids: Sequence[str], n: int, k: int, count: int, seed: int) -> list[list[list[str]]]:
    """``count`` groups of ``k`` steps of ``n`` utterances, all ``n * k`` of a group distinct.

    Like the paper's grouping files: a seeded permutation of ``ids`` is consumed ``n * k`` at a time
    (so each id is used once per pass, in random, never label-sorted, order); when fewer than
    ``n * k`` are left, a fresh permutation of all ids starts the next group.
    """
    ids = list(ids)
    if n < 1 or k < 1 or count < 0:
        raise ValueError(f"need n >= 1, k >= 1, count >= 0; got n={n}, k={k}, count={count}")
    if len(set(ids)) != len(ids):
        raise ValueError("utterance ids must be distinct")
    if n * k > len(ids):
        raise ValueError(f"a group of {n} x {k} needs {n * k} distinct utterances, only {len(ids)} given")
    rng = np.random.default_rng([seed, _GROUPS, n, k])
    pool: list[str] = []
    groups: list[list[list[str]]] = []
    for _ in range(count):
        if len(pool) < n * k:
            pool = [ids[i] for i in rng.permutation(len(ids))]
        take, pool = pool[:n * k], pool[n * k:]
        groups.append([take[s * n:(s + 1) * n] for s in range(k)])
    return groups
