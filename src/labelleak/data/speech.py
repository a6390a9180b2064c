"""The speech corpus the ASR experiments attack: utterances as word-piece ids, plus their features.

One entry point for the pipeline, :func:`build_speech_corpus`, turns a config spec into a
:class:`SpeechCorpus`. Two kinds:

* ``{"kind": "generated_speech", "vocab_size": 16328, "num_utterances": 402, "audio": "synthetic"}``
  (the default config): a generated vocabulary and utterances shaped like the paper's
  (:mod:`labelleak.data.speech_text`); nothing is read from disk.
* ``{"kind": "librispeech", "transcripts": [path, ...], "vocab": path,
  "selection": "paper_rule" | path-to-.ids, "audio": "synthetic" | "flac" | "espeak",
  "audio_root": path | null, "groupings": {"2x1": path, ...}}``: LibriSpeech transcripts encoded
  with lingvo's 16k vocabulary, restricted to the paper's 402 short utterances.

``audio`` picks :meth:`SpeechCorpus.features`: ``synthetic`` (per-piece frames, no audio),
``flac`` (log-mel of ``<audio_root>/.../<id>.flac``, needs soundfile) or ``espeak`` (log-mel of
espeak-ng speech of the transcript). :func:`corpus_groups` gives the updates' utterance groups and
:func:`training_utterances` the disjoint data the ASR model is trained on.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labelleak.data.audio import espeak_waveform, log_mel, resample, synthetic_features
from labelleak.data.base import check_spec_keys
from labelleak.data.librispeech import (
    find_flac,
    grouping_shape,
    read_flac,
    read_grouping,
    read_id_list,
    read_transcripts,
    select_paper_rule,
)
from labelleak.data.speech_text import generated_utterances, group_utterances
from labelleak.data.wordpiece import LINGVO_SIZE, Vocabulary, generated_vocabulary
from labelleak.errors import ConfigError, DatasetError

AUDIO_SOURCES = ("synthetic", "flac", "espeak")
SAMPLE_RATE, N_MELS = 16000, 80
GENERATED_KEYS = frozenset({"vocab_size", "num_utterances", "audio", "noise"})
LIBRISPEECH_KEYS = frozenset({"transcripts", "vocab", "selection", "audio", "audio_root", "groupings", "noise"})
# Tag of the training set's seed stream (the attacked set uses the master seed itself).
_TRAIN = 0x5452


def stable_id_seed(utt_id: str) -> int:
    """A 63-bit integer of ``utt_id`` that is the same in every process (unlike ``hash``)."""
    return int.from_bytes(hashlib.sha256(utt_id.encode("utf-8")).digest()[:8], "big") >> 1


@dataclass
class SpeechCorpus:
    """Utterances (id -> piece ids, no ``<s>``/``</s>``), their texts, and how to get features."""

    name: str
    vocab: Vocabulary
    utterances: dict[str, list[int]]
    texts: dict[str, str]
    audio: str = "synthetic"
    seed: int = 0
    audio_root: Path | None = None
    noise: float = 0.1
    _flac: dict[str, Path] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.audio not in AUDIO_SOURCES:
            raise ConfigError(f"audio: unknown source {self.audio!r}; known: {', '.join(AUDIO_SOURCES)}")
        if self.audio == "flac" and self.audio_root is None:
            raise ConfigError("audio_root: audio 'flac' needs the folder of the LibriSpeech .flac files")

    def __len__(self) -> int:
        return len(self.utterances)

    @property
    def ids(self) -> list[str]:
        """Utterance ids in corpus order."""
        return list(self.utterances)

    def features(self, utt_id: str) -> np.ndarray:
        """``(T, 80)`` float32 input features of ``utt_id`` from the corpus's audio source."""
        if utt_id not in self.utterances:
            raise KeyError(f"{self.name}: no utterance {utt_id!r}")
        if self.audio == "synthetic":
            return synthetic_features(self.utterances[utt_id], self.seed, n_mels=N_MELS, noise=self.noise,
                                      utterance_seed=stable_id_seed(utt_id))
        if self.audio == "espeak":
            return log_mel(espeak_waveform(self.texts[utt_id], sample_rate=SAMPLE_RATE), SAMPLE_RATE, N_MELS)
        path = self._flac.get(utt_id) or find_flac(self.audio_root, utt_id)
        self._flac[utt_id] = path
        wav, rate = read_flac(path)
        return log_mel(resample(wav, rate, SAMPLE_RATE), SAMPLE_RATE, N_MELS)


def _path(spec: Mapping[str, Any], key: str, value: Any = None, *, folder: bool = False) -> Path:
    """``spec[key]`` (or ``value``) as an existing path; ConfigError / DatasetError naming the key."""
    value = spec.get(key) if value is None else value
    if not isinstance(value, (str, Path)) or not str(value):
        raise ConfigError(f"{key}: expected a path, got {value!r}")
    path = Path(value)
    if not (path.is_dir() if folder else path.exists()):
        raise DatasetError(f"{key}: {path} does not exist" + (" (expected a directory)" if folder else ""))
    return path


def _audio(spec: Mapping[str, Any], allowed: Sequence[str]) -> str:
    audio = spec.get("audio", "synthetic")
    if audio not in allowed:
        raise ConfigError(f"audio: {audio!r} does not apply to kind {spec.get('kind')!r} (allowed: {', '.join(allowed)})")
    if audio == "espeak" and shutil.which("espeak-ng") is None:
        raise DatasetError("audio: 'espeak' needs the espeak-ng program, which is not installed")
    if audio == "flac":
        try:
            import soundfile  # noqa: F401  (fail at build time, not in the middle of a run)
        except ImportError:
            raise DatasetError("audio: 'flac' needs the soundfile package (pip install soundfile)") from None
    return audio


def _positive_int(spec: Mapping[str, Any], key: str, default: int) -> int:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}: expected a positive integer, got {value!r}")
    return value


def _noise(spec: Mapping[str, Any]) -> float:
    value = spec.get("noise", 0.1)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ConfigError(f"noise: expected a number >= 0 (synthetic feature noise), got {value!r}")
    return float(value)


def _build_generated(spec: Mapping[str, Any], seed: int) -> SpeechCorpus:
    check_spec_keys(spec, GENERATED_KEYS)
    vocab = generated_vocabulary(_positive_int(spec, "vocab_size", LINGVO_SIZE), seed)
    utts = dict(generated_utterances(vocab, _positive_int(spec, "num_utterances", 402), seed))
    return SpeechCorpus(name=spec.get("name", "generated_speech"), vocab=vocab, utterances=utts,
                        texts={u: vocab.decode(t) for u, t in utts.items()},
                        audio=_audio(spec, ("synthetic", "espeak")), seed=seed, noise=_noise(spec))


def _read_librispeech(spec: Mapping[str, Any]) -> tuple[dict[str, str], Vocabulary]:
    paths = spec.get("transcripts")
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths or not isinstance(paths, Sequence):
        raise ConfigError(f"transcripts: expected a list of *.trans.txt files or LibriSpeech folders, got {paths!r}")
    texts = read_transcripts([_path(spec, "transcripts", p) for p in paths])
    return texts, Vocabulary.from_file(_path(spec, "vocab"))


def _build_librispeech(spec: Mapping[str, Any], seed: int) -> SpeechCorpus:
    check_spec_keys(spec, LIBRISPEECH_KEYS)
    audio = _audio(spec, AUDIO_SOURCES)
    texts, vocab = _read_librispeech(spec)
    selection = spec.get("selection", "paper_rule")
    if selection == "paper_rule":
        chosen = select_paper_rule(texts, seed)
    else:
        path = _path(spec, "selection")
        chosen = read_id_list(path)
        missing = [u for u in chosen if u not in texts]
        if missing:
            raise DatasetError(f"selection: {path} lists {missing[0]!r}, which no transcripts file has")
    root = spec.get("audio_root")
    root = _path(spec, "audio_root", folder=True) if root is not None else None
    if audio == "flac" and root is None:
        raise ConfigError("audio_root: audio 'flac' needs the folder of the LibriSpeech .flac files")
    return SpeechCorpus(name=spec.get("name", "librispeech"), vocab=vocab,
                        utterances={u: vocab.encode(texts[u]) for u in chosen},
                        texts={u: texts[u] for u in chosen}, audio=audio, seed=seed, audio_root=root,
                        noise=_noise(spec))


def build_speech_corpus(spec: Mapping[str, Any], seed: int) -> SpeechCorpus:
    """The attacked utterances described by ``spec`` (see the module docstring for the two kinds).

    ``seed`` (the config's master seed) seeds everything generated: the vocabulary and utterances
    of ``generated_speech``, the tie-breaking of ``selection: paper_rule`` and the synthetic
    features' piece patterns and noise.
    """
    if not isinstance(spec, Mapping):
        raise ConfigError(f"speech dataset: a spec must be a mapping, got {type(spec).__name__}")
    kind = spec.get("kind")
    if kind == "generated_speech":
        return _build_generated(spec, seed)
    if kind == "librispeech":
        return _build_librispeech(spec, seed)
    raise ConfigError(f"speech dataset: unknown kind {kind!r}; known: generated_speech, librispeech")


def corpus_groups(spec: Mapping[str, Any], corpus: SpeechCorpus, n: int, k: int, count: int | None,
                  seed: int) -> list[list[list[str]]]:
    """``count`` updates' utterances: groups of ``k`` local steps of ``n`` utterance ids each.

    For ``librispeech`` with ``groupings[f"{n}x{k}"]`` (e.g. ``"2x1"``: the paper's
    ``test_less_50_group_2.txt``; ``"1x4"``: ``..._step_4.txt``), the first ``count`` groups of
    that file (all when ``count`` is None); its ids must be in the corpus, so pair it with the
    paper's ``.ids`` selection. Otherwise :func:`group_utterances` over the corpus ids.
    """
    key = f"{n}x{k}"
    groupings = (spec.get("groupings") or {}) if spec.get("kind") == "librispeech" else {}
    if not isinstance(groupings, Mapping):
        raise ConfigError(f"groupings: expected a mapping like {{'2x1': path}}, got {type(groupings).__name__}")
    if key not in groupings:
        return group_utterances(corpus.ids, n, k, len(corpus) // (n * k) if count is None else count, seed)
    path = _path(spec, f"groupings.{key}", groupings[key])
    groups = read_grouping(path)
    if grouping_shape(groups) != (n, k):
        raise DatasetError(f"groupings.{key}: {path} holds groups of shape {grouping_shape(groups)}, not ({n}, {k}) "
                           "(utterances per step, steps)")
    unknown = next((u for g in groups for s in g for u in s if u not in corpus.utterances), None)
    if unknown is not None:
        raise DatasetError(f"groupings.{key}: {path} uses {unknown!r}, which is not in the corpus selection "
                           "(use selection: the paper's test-sorted_less_50.ids with the paper's groupings)")
    if count is not None and count > len(groups):
        raise DatasetError(f"groupings.{key}: {path} has {len(groups)} groups, {count} were asked for")
    return groups if count is None else groups[:count]


def training_utterances(spec: Mapping[str, Any], corpus: SpeechCorpus, count: int | None,
                        seed: int) -> SpeechCorpus:
    """The utterances the ASR model is trained on, disjoint from the attacked ones, as a corpus.

    The model must learn the task, but the attacked utterances stand for a client's private data,
    which the server never trained on. ``generated_speech``: a fresh generated set (its own seed
    stream, same length and piece distributions; ``count`` None = 10 x the attacked set).
    ``librispeech``: every transcript not in the selection (the rest of the test sets), encoded;
    ``count`` keeps a seeded sample of that many. Vocabulary, audio source and ``corpus.seed``
    (hence the synthetic piece patterns) are shared with ``corpus``.
    """
    if spec.get("kind") == "generated_speech":
        n = 10 * len(corpus) if count is None else count
        train_seed = int(np.random.SeedSequence([seed, _TRAIN]).generate_state(1)[0])
        utts = dict(generated_utterances(corpus.vocab, n, train_seed, prefix="gen-train"))
        texts = {u: corpus.vocab.decode(t) for u, t in utts.items()}
    elif spec.get("kind") == "librispeech":
        all_texts, _ = _read_librispeech(spec)
        rest = [u for u in all_texts if u not in corpus.utterances]
        if count is not None and count < len(rest):
            pick = np.random.default_rng([seed, _TRAIN]).choice(len(rest), size=count, replace=False)
            rest = [rest[i] for i in sorted(pick)]
        texts = {u: all_texts[u] for u in rest}
        utts = {u: corpus.vocab.encode(t) for u, t in texts.items()}
    else:
        raise ConfigError(f"speech dataset: unknown kind {spec.get('kind')!r}; known: generated_speech, librispeech")
    return SpeechCorpus(name=f"{corpus.name}-train", vocab=corpus.vocab, utterances=utts, texts=texts,
                        audio=corpus.audio, seed=corpus.seed, audio_root=corpus.audio_root, noise=corpus.noise)
