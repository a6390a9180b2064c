"""Sequence metrics of the transcript tables (paper Table 2 LE, Table 5 and Figure 2 WER / EM).

Transcripts are piece-id sequences; they are scored on words, so two segmentations of the same
words are the same transcript. The caller passes ``decode(ids) -> list of words`` (e.g.
``functools.partial(pieces_to_words, pieces=vocab)``), which keeps these metrics free of any
vocabulary module. Per update:

* WER = word-level Levenshtein distance (substitutions, insertions, deletions) / reference words.
  Insertions are counted, so WER can exceed 1 (the paper's "> 1" for GM without BoW).
* exact match = 1 iff the decoded word sequences are equal.
* LE (length error of S) = ``1 - S_hat / S``, the definition of the paper's report script (see
  shared/reference/attacks.md, sec. 2.2): signed, positive when S is underestimated (a trained
  model's small singular values cut off), so over- and underestimates can cancel in a mean;
  ``absolute=True`` gives ``|S_hat - S| / S`` instead.

Tables average these per-update values over updates.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence

WORD_MARKER = "\u2581"  # "▁": a piece starting with it starts a word
SKIP_IDS = (1, 2)  # <s>, </s> (labelleak.models.asr.SOS, EOS): markers, not words

Decode = Callable[[Sequence[int]], Sequence[str]]


def pieces_to_words(ids: Iterable[int], pieces: Sequence[str], skip: Iterable[int] = SKIP_IDS) -> list[str]:
    """Words of a piece-id sequence: pieces joined, split at every word marker (and whitespace)."""
    skip = set(skip)
    text = "".join(pieces[int(i)] for i in ids if int(i) not in skip)
    return text.replace(WORD_MARKER, " ").split()


def edit_distance(hypothesis: Sequence[Hashable], reference: Sequence[Hashable]) -> int:
    """Levenshtein distance (unit costs) between two sequences, by the two-row DP."""
    prev = list(range(len(reference) + 1))
    for i, h in enumerate(hypothesis, 1):
        cur = [i] + [0] * len(reference)
        for j, r in enumerate(reference, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (h != r))
        prev = cur
    return prev[-1]


def _words(ids: Sequence[int], decode: Decode) -> list[str]:
    words = decode(ids)
    return words.split() if isinstance(words, str) else list(words)


def word_error_rate(hypothesis: Sequence[int], reference: Sequence[int], decode: Decode) -> float:
    """Word edit distance / reference words (can exceed 1); raises on an empty reference."""
    ref = _words(reference, decode)
    if not ref:
        raise ValueError("WER is undefined for an empty reference transcript")
    return edit_distance(_words(hypothesis, decode), ref) / len(ref)


def exact_match(hypothesis: Sequence[int], reference: Sequence[int], decode: Decode) -> float:
    """1.0 iff both transcripts decode to the same word sequence, else 0.0."""
    return float(_words(hypothesis, decode) == _words(reference, decode))


def length_error(estimated: int, true: int, *, absolute: bool = False) -> float:
    """``1 - estimated / true`` (the report script's LE), or ``|estimated - true| / true``."""
    if true <= 0:
        raise ValueError(f"the true length must be positive, got {true}")
    return abs(estimated - true) / true if absolute else 1.0 - estimated / true
