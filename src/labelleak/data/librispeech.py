"""LibriSpeech transcripts, audio files and the paper's utterance selection; nothing is downloaded.

Dang et al. attack the bag of word pieces of short LibriSpeech utterances. This module reads what
that needs from plain files:

* ``*.trans.txt`` transcripts (lines ``UTT-ID TRANSCRIPT``, as in the corpus and in
  ``../shared/data/librispeech``), from one file or a whole LibriSpeech tree;
* the ``.flac`` of an utterance (``<root>/<split>/<spk>/<chap>/<id>.flac``, or at any depth),
  decoded with the optional ``soundfile`` package;
* the paper's sample files: ``.ids`` lists (one id per line) and grouping files, where ``,`` joins
  the utterances of one batch and ``|`` separates successive local steps;
* :func:`select_paper_rule`, the paper's rule that picks the 402 attacked utterances.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from labelleak.errors import DatasetError

#: The paper's selection: transcripts of at most this many characters, at most PER_LENGTH each.
MAX_CHARS, PER_LENGTH = 50, 10

TRANS_LAYOUT = "lines 'UTT-ID TRANSCRIPT' as in LibriSpeech *.trans.txt"


def read_transcript_file(path: str | Path) -> dict[str, str]:
    """id -> transcript of one ``*.trans.txt`` file, in file order; DatasetError on a bad line."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such transcript file (expected {TRANS_LAYOUT})")
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            utt, _, text = line.partition(" ")
            if not utt or not text.strip():
                raise DatasetError(f"{path}:{lineno}: expected {TRANS_LAYOUT}, got {line[:60]!r}")
            if utt in out:
                raise DatasetError(f"{path}:{lineno}: utterance id {utt!r} appears twice")
            out[utt] = text.strip()
    return out


def read_transcripts(paths: str | Path | Iterable[str | Path]) -> dict[str, str]:
    """id -> transcript over files and/or directories (searched recursively for ``*.trans.txt``).

    Order: the paths in the order given, files of a directory in sorted path order, lines in file
    order. An id found twice is an error (it would make the selection ambiguous).
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out: dict[str, str] = {}
    for p in map(Path, paths):
        if p.is_dir():
            files = sorted(p.rglob("*.trans.txt"))
            if not files:
                raise DatasetError(f"{p}: no *.trans.txt file under this directory (expected a LibriSpeech tree)")
        else:
            files = [p]
        for f in files:
            for utt, text in read_transcript_file(f).items():
                if utt in out:
                    raise DatasetError(f"{f}: utterance id {utt!r} was already read from another file")
                out[utt] = text
    return out


def find_flac(root: str | Path, utt_id: str) -> Path:
    """The ``.flac`` of ``utt_id`` under ``root``: the LibriSpeech place first, then any depth."""
    root = Path(root)
    layout = "expected <root>/<split>/<spk>/<chap>/<id>.flac"
    if not root.is_dir():
        raise DatasetError(f"{root}: no such audio directory ({layout})")
    parts = utt_id.split("-")
    if len(parts) == 3:
        splits = [root, *(d for d in sorted(root.iterdir()) if d.is_dir())]
        for cand in (d / parts[0] / parts[1] / f"{utt_id}.flac" for d in splits):
            if cand.is_file():
                return cand
    hits = sorted(root.rglob(f"{utt_id}.flac"))
    if not hits:
        raise DatasetError(f"{root}: no {utt_id}.flac under this directory ({layout})")
    return hits[0]


def read_flac(path: str | Path) -> tuple[np.ndarray, int]:
    """(mono float32 waveform in [-1, 1], sample rate) of an audio file, decoded with soundfile."""
    path = Path(path)
    try:
        import soundfile  # optional: only the "flac" audio source needs it
    except ImportError:
        raise DatasetError(f"{path}: reading .flac audio needs the soundfile package (pip install soundfile)") from None
    if not path.is_file():
        raise DatasetError(f"{path}: no such audio file")
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises its own error types (LibsndfileError, RuntimeError)
        raise DatasetError(f"{path}: not a readable audio file ({exc})") from None
    return data.mean(axis=1).astype(np.float32), int(rate)


def select_paper_rule(transcripts: Mapping[str, str], seed: int = 0, max_chars: int = MAX_CHARS,
                      per_length: int = PER_LENGTH) -> list[str]:
    """The paper's 402 attacked utterances: for each length <= ``max_chars``, at most ``per_length``.

    Length is the transcript's length in characters (spaces and apostrophes counted); pass the
    pooled test-clean + test-other transcripts. The paper does not say how it broke ties, so when
    a length has more than ``per_length`` utterances we choose them with
    ``numpy.random.default_rng(seed).choice(..., replace=False)`` over the ids of that length
    sorted in byte order, drawing lengths in increasing order from one generator. The per-length
    counts (hence the length histogram and the total, 402 on LibriSpeech) match the paper's
    list; the ids of crowded lengths differ. Returned ids are sorted by (length, id).
    """
    by_len: dict[int, list[str]] = {}
    for utt, text in transcripts.items():
        if len(text) <= max_chars:
            by_len.setdefault(len(text), []).append(utt)
    rng = np.random.default_rng(seed)
    chosen: list[str] = []
    for length in sorted(by_len):
        ids = sorted(by_len[length], key=lambda s: s.encode("utf-8"))
        if len(ids) > per_length:
            pick = rng.choice(len(ids), size=per_length, replace=False)
            ids = [ids[i] for i in sorted(pick)]
        chosen.extend(ids)
    return chosen


def read_id_list(path: str | Path) -> list[str]:
    """The ids of a ``.ids`` file (one per line, blank lines ignored); duplicates are an error."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such id list (expected one utterance id per line)")
    ids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if any(" " in i or "," in i or "|" in i for i in ids):
        raise DatasetError(f"{path}: expected one utterance id per line, found a line with ' ', ',' or '|'")
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DatasetError(f"{path}: utterance id {dup!r} is listed twice")
    return ids


def parse_grouping(text: str) -> list[list[list[str]]]:
    """Groups of a grouping text: one group per line, ``|`` between steps, ``,`` within a step."""
    groups: list[list[list[str]]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        steps = [[u.strip() for u in step.split(",")] for step in line.strip().split("|")]
        if any(not u for step in steps for u in step):
            raise ValueError(f"empty utterance id in {line[:60]!r}")
        groups.append(steps)
    return groups


def read_grouping(path: str | Path) -> list[list[list[str]]]:
    """Groups of a paper grouping file: ``a,b|c,d`` -> ``[[a, b], [c, d]]`` (2 steps of 2 utts)."""
    path = Path(path)
    layout = "one group per line, ',' between the utterances of a step, '|' between local steps"
    if not path.is_file():
        raise DatasetError(f"{path}: no such grouping file (expected {layout})")
    try:
        return parse_grouping(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DatasetError(f"{path}: {exc} (expected {layout})") from None


def grouping_shape(groups: Sequence[Sequence[Sequence[str]]]) -> tuple[int, int] | None:
    """``(n, k)`` (utterances per step, steps per group) when all groups share it, else None."""
    shapes = {(len(g[0]), len(g)) for g in groups if g} | {(len(s), len(g)) for g in groups for s in g}
    return shapes.pop() if len(shapes) == 1 else None
