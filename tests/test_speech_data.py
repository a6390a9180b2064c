"""The speech data layer: transcripts, paper selection, word pieces, generated text, features, corpus."""

from __future__ import annotations

import math
import shutil
import sys
import time
import types
import wave
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from labelleak.data import audio as audio_mod
from labelleak.data.audio import espeak_waveform, log_mel, mel_filterbank, read_wav, resample, synthetic_features
from labelleak.data.librispeech import (
    find_flac,
    grouping_shape,
    parse_grouping,
    read_flac,
    read_grouping,
    read_id_list,
    read_transcript_file,
    read_transcripts,
    select_paper_rule,
)
from labelleak.data.speech import SpeechCorpus, build_speech_corpus, corpus_groups, stable_id_seed, training_utterances
from labelleak.data.speech_text import (
    PAPER_LENGTHS,
    generated_utterances,
    group_utterances,
    label_pieces,
    length_probabilities,
)
from labelleak.data.wordpiece import EOS, SOS, UNK, WORD_START, Vocabulary, generated_vocabulary
from labelleak.errors import ConfigError, DatasetError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
LIBRI = SHARED / "librispeech"
SAMPLES = LIBRI / "paper-samples"
TRANS = [LIBRI / "test-clean.trans.txt", LIBRI / "test-other.trans.txt"]
VOCAB = SHARED / "vocab" / "wpm_16k_librispeech.vocab"


def _need_shared() -> None:
    if not all(p.is_file() for p in [*TRANS, VOCAB, SAMPLES / "test-sorted_less_50.ids"]):
        pytest.skip(f"shared speech data absent under {SHARED}")


@pytest.fixture(scope="module")
def shared_texts():
    _need_shared()
    return read_transcripts(TRANS)


@pytest.fixture(scope="module")
def lingvo():
    _need_shared()
    return Vocabulary.from_file(VOCAB)


@pytest.fixture(scope="module")
def gen_vocab():
    return generated_vocabulary(seed=3)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _tone(freq: float, seconds: float = 1.0, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * math.pi * freq * t)).astype(np.float32)


# ---------------------------------------------------------------- librispeech.py


def test_transcripts_from_files_and_tree(tmp_path):
    a = _write(tmp_path / "tree" / "test-x" / "1" / "10" / "1-10.trans.txt", "1-10-0001 HELLO WORLD\n1-10-0000 IT'S ME\n")
    _write(tmp_path / "tree" / "test-x" / "2" / "20" / "2-20.trans.txt", "2-20-0000 A B\n\n")
    assert read_transcript_file(a) == {"1-10-0001": "HELLO WORLD", "1-10-0000": "IT'S ME"}
    assert list(read_transcript_file(a)) == ["1-10-0001", "1-10-0000"]  # file order kept
    tree = read_transcripts(tmp_path / "tree")
    assert list(tree) == ["1-10-0001", "1-10-0000", "2-20-0000"]
    assert read_transcripts([a]) == read_transcript_file(a)


def test_transcript_errors(tmp_path):
    with pytest.raises(DatasetError, match="no such transcript file"):
        read_transcript_file(tmp_path / "nope.trans.txt")
    with pytest.raises(DatasetError, match=r"bad.trans.txt:2: expected"):
        read_transcript_file(_write(tmp_path / "bad.trans.txt", "1-1-1 OK\nLONELYID\n"))
    dup = _write(tmp_path / "d" / "x.trans.txt", "1-1-1 A\n")
    _write(tmp_path / "d" / "y.trans.txt", "1-1-1 B\n")
    with pytest.raises(DatasetError, match="already read"):
        read_transcripts(dup.parent)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"no \*.trans.txt"):
        read_transcripts(tmp_path / "empty")


def test_find_flac(tmp_path):
    librispeech_place = tmp_path / "root" / "test-clean" / "61" / "70968" / "61-70968-0000.flac"
    elsewhere = tmp_path / "root" / "misc" / "deep" / "er" / "x-y.flac"
    for p in (librispeech_place, elsewhere):
        p.parent.mkdir(parents=True)
        p.write_bytes(b"")
    assert find_flac(tmp_path / "root", "61-70968-0000") == librispeech_place
    assert find_flac(tmp_path / "root" / "test-clean", "61-70968-0000") == librispeech_place
    assert find_flac(tmp_path / "root", "x-y") == elsewhere
    with pytest.raises(DatasetError, match="no 1-2-3.flac"):
        find_flac(tmp_path / "root", "1-2-3")
    with pytest.raises(DatasetError, match="no such audio directory"):
        find_flac(tmp_path / "absent", "1-2-3")


def test_read_flac_without_soundfile(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "soundfile", None)  # import soundfile -> ImportError
    with pytest.raises(DatasetError, match="soundfile"):
        read_flac(tmp_path / "a.flac")


def test_read_flac_with_soundfile(tmp_path):
    sf = pytest.importorskip("soundfile")
    sf.write(str(tmp_path / "a.flac"), _tone(440.0), 16000)
    wav, rate = read_flac(tmp_path / "a.flac")
    assert rate == 16000 and wav.dtype == np.float32 and wav.shape == (16000,)
    assert np.allclose(wav, _tone(440.0), atol=1e-3)


def test_paper_rule_on_made_up_transcripts():
    texts = {f"{i:03d}-0-0": "X" * (1 + i % 60) for i in range(600)}  # 10 per length 1..60
    texts.update({f"9{i:02d}-0-0": "AB C" for i in range(7)})  # 7 more of length 4
    chosen = select_paper_rule(texts, seed=1)
    counts = Counter(len(texts[u]) for u in chosen)
    assert set(counts) == set(range(1, 51)) and all(c == 10 for c in counts.values())
    assert chosen == select_paper_rule(texts, seed=1)
    assert any(select_paper_rule(texts, seed=s) != chosen for s in range(2, 6))  # ties broken by the seed
    assert [len(texts[u]) for u in chosen] == sorted(len(texts[u]) for u in chosen)


def test_paper_rule_gives_402_with_the_papers_histogram(shared_texts):
    assert len(shared_texts) == 2620 + 2939
    chosen = select_paper_rule(shared_texts, seed=0)
    paper = read_id_list(SAMPLES / "test-sorted_less_50.ids")
    assert len(chosen) == len(set(chosen)) == len(paper) == 402
    assert all(len(shared_texts[u]) <= 50 for u in chosen)
    assert Counter(len(shared_texts[u]) for u in chosen) == Counter(len(shared_texts[u]) for u in paper)


def test_id_lists_and_groupings(tmp_path):
    assert parse_grouping("a,b|c,d\n\ne,f|g,h\n") == [[["a", "b"], ["c", "d"]], [["e", "f"], ["g", "h"]]]
    assert parse_grouping("a|b|c") == [[["a"], ["b"], ["c"]]]
    assert grouping_shape(parse_grouping("a,b|c,d")) == (2, 2)
    assert grouping_shape(parse_grouping("a,b\nc")) is None
    assert read_id_list(_write(tmp_path / "x.ids", "a\n\nb\n")) == ["a", "b"]
    with pytest.raises(DatasetError, match="listed twice"):
        read_id_list(_write(tmp_path / "d.ids", "a\nb\na\n"))
    with pytest.raises(DatasetError, match="one utterance id per line"):
        read_id_list(_write(tmp_path / "g.ids", "a,b\n"))
    with pytest.raises(DatasetError, match="empty utterance id"):
        read_grouping(_write(tmp_path / "bad.txt", "a,,b\n"))
    with pytest.raises(DatasetError, match="no such grouping file"):
        read_grouping(tmp_path / "absent.txt")


@pytest.mark.parametrize("name, groups, shape", [
    ("test_less_50_group_2.txt", 201, (2, 1)),
    ("test_less_50_step_4.txt", 100, (1, 4)),
    ("test_less_50_group_2_step_2.txt", 100, (2, 2)),
    ("test_less_50_group_4_step_4.txt", 25, (4, 4)),
])
def test_shared_grouping_files(shared_texts, name, groups, shape):
    got = read_grouping(SAMPLES / name)
    assert len(got) == groups and grouping_shape(got) == shape
    ids = [u for g in got for s in g for u in s]
    assert len(ids) == len(set(ids))  # each utterance once per file, as group_utterances does
    assert all(u in shared_texts for u in ids)
    assert set(ids) <= set(read_id_list(SAMPLES / "test-sorted_less_50.ids"))


# ---------------------------------------------------------------- wordpiece.py


def _small_vocab() -> Vocabulary:
    return Vocabulary(["<unk>", "<s>", "</s>", "<noise>", "<epsilon>", WORD_START,
                       "\u2581the", "\u2581th", "ere", "r", "e", "\u2581a", "'", "s", "\u2581it"])


def test_vocabulary_basics(tmp_path):
    v = Vocabulary.from_file(_write(tmp_path / "v.vocab", "<unk>\n<s>\n</s>\n<noise>\n<epsilon>\n\u2581\n\u2581hi\tscore\nh\n"))
    assert len(v) == 8 and v.id("\u2581hi") == 6 and v.id("zz") == UNK
    assert (UNK, SOS, EOS) == (0, 1, 2) and v.special_ids == {0, 1, 2, 3, 4}
    with pytest.raises(DatasetError, match="appears twice"):
        Vocabulary(["<unk>", "<s>", "</s>", "a", "a"])
    with pytest.raises(DatasetError, match="first pieces"):
        Vocabulary(["a", "<s>", "</s>"])
    with pytest.raises(DatasetError, match="no such vocabulary file"):
        Vocabulary.from_file(tmp_path / "absent.vocab")


def test_greedy_longest_match_and_unk():
    v = _small_vocab()
    # "▁there": ▁the (longest), then "re" is not a piece: r, e
    assert v.encode("THERE") == [v.id("\u2581the"), v.id("r"), v.id("e")]
    assert v.encode("it's  a") == [v.id("\u2581it"), v.id("'"), v.id("s"), v.id("\u2581a")]
    assert v.encode("the ax") == [v.id("\u2581the"), v.id("\u2581a"), UNK]  # 'x' is not covered
    assert v.decode(v.encode("THERE IT'S")) == "THERE IT'S"
    assert v.decode([SOS, *v.encode("the ax"), EOS]) == "THE A<UNK>"


def test_lingvo_vocab_encodes_all_test_transcripts(shared_texts, lingvo):
    assert len(lingvo) == 16328 and lingvo.pieces[:6] == ["<unk>", "<s>", "</s>", "<noise>", "<epsilon>", WORD_START]
    fresh = Vocabulary.from_file(VOCAB)  # no warm cache
    start = time.perf_counter()
    encoded = {u: fresh.encode(t) for u, t in shared_texts.items()}
    elapsed = time.perf_counter() - start
    assert elapsed < 3.0, f"encoding 5559 transcripts took {elapsed:.2f} s"
    assert not any(UNK in ids for ids in encoded.values())
    assert all(fresh.decode(encoded[u]) == t for u, t in shared_texts.items())
    assert encoded["1089-134686-0001"][0] == fresh.id("\u2581stuff")


def test_generated_vocabulary(gen_vocab):
    assert len(gen_vocab) == 16328
    assert gen_vocab.pieces[:6] == ["<unk>", "<s>", "</s>", "<noise>", "<epsilon>", WORD_START]
    assert gen_vocab.pieces == generated_vocabulary(seed=3).pieces
    assert gen_vocab.pieces != generated_vocabulary(seed=4).pieces
    assert all(p == p.lower() for p in gen_vocab.pieces)
    assert len(generated_vocabulary(100, seed=0)) == 100
    rng = np.random.default_rng(0)
    for _ in range(50):
        words = ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz'"), size=rng.integers(1, 9)))
                 for _ in range(rng.integers(1, 6))]
        text = " ".join(words).upper()
        ids = gen_vocab.encode(text)
        assert UNK not in ids and gen_vocab.decode(ids) == text
    with pytest.raises(DatasetError, match="at least"):
        generated_vocabulary(10)


# ---------------------------------------------------------------- speech_text.py


def test_paper_length_histogram_matches_shared_data(shared_texts, lingvo):
    assert sum(PAPER_LENGTHS.values()) == 402
    paper = read_id_list(SAMPLES / "test-sorted_less_50.ids")
    measured = Counter(len(lingvo.encode(shared_texts[u])) for u in paper)
    assert dict(measured) == dict(PAPER_LENGTHS)


def test_generated_utterances(gen_vocab):
    utts = generated_utterances(gen_vocab, 4000, seed=5)
    assert utts == generated_utterances(gen_vocab, 4000, seed=5)
    assert utts != generated_utterances(gen_vocab, 4000, seed=6)
    assert [u for u, _ in utts[:2]] == ["gen-000000", "gen-000001"]
    usable = set(label_pieces(gen_vocab).tolist())
    assert all(t in usable for _, ids in utts for t in ids)
    assert not usable & (gen_vocab.special_ids | {gen_vocab.id(WORD_START)})
    lengths, probs = length_probabilities(1, 15)
    freq = Counter(len(ids) for _, ids in utts)
    for n, p in zip(lengths, probs):
        assert abs(freq.get(int(n), 0) / 4000 - p) < 0.03, n
    repeats = sum(len(set(ids)) < len(ids) for _, ids in utts) / len(utts)
    assert 0.05 < repeats < 0.3  # real test utterances: 15%
    short = generated_utterances(gen_vocab, 300, seed=5, min_pieces=4, max_pieces=6, prefix="x")
    assert {len(ids) for _, ids in short} == {4, 5, 6} and short[0][0] == "x-000000"
    assert {len(ids) for _, ids in generated_utterances(gen_vocab, 50, 0, 20, 21)} <= {20, 21}


def test_group_utterances():
    ids = [f"u{i:03d}" for i in range(40)]
    groups = group_utterances(ids, n=4, k=2, count=12, seed=0)
    assert len(groups) == 12 and all(len(g) == 2 and all(len(s) == 4 for s in g) for g in groups)
    assert all(len({u for s in g for u in s}) == 8 for g in groups)
    first_pass = [u for g in groups[:5] for s in g for u in s]
    assert sorted(first_pass) == ids  # each id once per pass
    assert groups == group_utterances(ids, 4, 2, 12, seed=0)
    assert groups != group_utterances(ids, 4, 2, 12, seed=1)
    assert not all(s == sorted(s) for g in groups for s in g)
    with pytest.raises(ValueError, match="needs 50"):
        group_utterances(ids, 10, 5, 1, 0)


# ---------------------------------------------------------------- audio.py


def _htk_mel(f):
    return 2595 * np.log10(1 + np.asarray(f) / 700)


@pytest.mark.parametrize("freq", [300.0, 1000.0, 3000.0, 6000.0])
def test_log_mel_pure_tone_lands_in_its_bin(freq):
    feats = log_mel(_tone(freq))
    assert feats.shape == (98, 80) and feats.dtype == np.float32
    centres_hz = 700 * (10 ** (np.linspace(_htk_mel(125), _htk_mel(7600), 82)[1:-1] / 2595) - 1)
    expected = int(np.argmin(np.abs(centres_hz - freq)))
    assert abs(int(np.argmax(feats.mean(axis=0))) - expected) <= 1
    assert int(np.argmax(log_mel(_tone(freq), preemphasis=0).mean(axis=0))) in (expected - 1, expected, expected + 1)


def test_log_mel_shapes_and_floor():
    assert log_mel(np.zeros(16000)).shape == (98, 80)
    assert np.allclose(log_mel(np.zeros(16000)), np.log(1e-6))
    assert log_mel(np.zeros(100)).shape == (1, 80)
    assert log_mel(_tone(500, rate=8000), sample_rate=8000, n_mels=40).shape == (98, 40)
    fb = mel_filterbank(80, 512, 16000)
    assert fb.shape == (257, 80) and fb.min() >= 0 and fb.max() <= 1 and np.all(fb.max(axis=0) > 0.3)
    with pytest.raises(ValueError):
        log_mel(np.zeros((2, 100)))


def test_synthetic_features_are_learnable():
    tokens = [7, 300, 7, 15000]
    a = synthetic_features(tokens, seed=1, utterance_seed=10)
    assert a.dtype == np.float32 and a.shape[1] == 80 and 4 * 3 <= a.shape[0] <= 4 * 6
    assert np.array_equal(a, synthetic_features(tokens, seed=1, utterance_seed=10))
    b = synthetic_features(tokens, seed=1, utterance_seed=11)
    assert a.shape == b.shape and not np.array_equal(a, b)  # same patterns, other noise
    assert np.abs(a - b).max() < 1.0
    other = synthetic_features(tokens, seed=2, utterance_seed=10)  # other corpus seed: other patterns
    assert other.shape != a.shape or not np.allclose(other, a, atol=0.5)
    # nearest clean pattern of each frame gives the pieces back
    clean = {t: synthetic_features([t], seed=1, noise=0.0) for t in set(tokens)}
    assert all(len(np.unique(c, axis=0)) == 1 and 3 <= len(c) <= 6 for c in clean.values())
    protos = np.stack([clean[t][0] for t in sorted(clean)])
    nearest = np.array(sorted(clean))[np.argmin(((a[:, None, :] - protos[None]) ** 2).sum(-1), axis=1)]
    expected = np.concatenate([[t] * len(clean[t]) for t in tokens])
    assert np.array_equal(nearest, expected)
    assert synthetic_features([], seed=0).shape == (0, 80)


def test_wav_reading_and_resampling(tmp_path):
    pcm = (_tone(440.0, 0.5, 22050) * 32767).astype(np.int16)
    with wave.open(str(tmp_path / "a.wav"), "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(22050)
        wf.writeframes(pcm.tobytes())
    wav, rate = read_wav(tmp_path / "a.wav")
    assert rate == 22050 and np.allclose(wav, _tone(440.0, 0.5, 22050), atol=1e-4)
    down = resample(wav, 22050, 16000)
    assert abs(down.size - 8000) <= 1
    assert np.allclose(down[1000:7000], _tone(440.0, 0.5, 16000)[1000:7000], atol=0.02)
    with pytest.raises(DatasetError, match="not a readable"):
        read_wav(_write(tmp_path / "b.wav", "not a wav"))


def test_espeak_missing(monkeypatch):
    monkeypatch.setattr(audio_mod.shutil, "which", lambda name: None)
    with pytest.raises(DatasetError, match="espeak-ng is not installed"):
        espeak_waveform("HELLO")


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_espeak_waveform():
    wav = espeak_waveform("HELLO WORLD")
    assert wav.dtype == np.float32 and 0.3 * 16000 < wav.size < 5 * 16000 and np.abs(wav).max() > 0.01
    assert log_mel(wav).shape[1] == 80


# ---------------------------------------------------------------- speech.py


def test_generated_corpus_and_training_set():
    spec = {"kind": "generated_speech", "vocab_size": 16328, "num_utterances": 402, "audio": "synthetic"}
    corpus = build_speech_corpus(spec, seed=0)
    assert isinstance(corpus, SpeechCorpus) and len(corpus) == 402 and len(corpus.vocab) == 16328
    u = corpus.ids[0]
    assert corpus.texts[u] == corpus.vocab.decode(corpus.utterances[u])
    assert not {SOS, EOS} & {t for ids in corpus.utterances.values() for t in ids}
    feats = corpus.features(u)
    assert feats.shape[1] == 80 and 3 * len(corpus.utterances[u]) <= feats.shape[0] <= 6 * len(corpus.utterances[u])
    assert np.array_equal(feats, build_speech_corpus(spec, seed=0).features(u))
    assert build_speech_corpus(spec, seed=1).utterances != corpus.utterances
    with pytest.raises(KeyError):
        corpus.features("nope")
    train = training_utterances(spec, corpus, None, seed=0)
    assert len(train) == 4020 and not set(train.ids) & set(corpus.ids)
    assert train.ids[0] == "gen-train-000000" and train.vocab is corpus.vocab
    assert len(training_utterances(spec, corpus, 50, seed=0)) == 50
    groups = corpus_groups(spec, corpus, 2, 2, 10, seed=0)
    assert len(groups) == 10 and grouping_shape(groups) == (2, 2)
    assert len(corpus_groups(spec, corpus, 4, 1, None, seed=0)) == 100
    small = build_speech_corpus({"kind": "generated_speech", "vocab_size": 500, "num_utterances": 5}, seed=0)
    assert len(small) == 5 and len(small.vocab) == 500


def test_spec_errors(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="unknown kind"):
        build_speech_corpus({"kind": "timit"}, 0)
    with pytest.raises(ConfigError, match="num_utterances"):
        build_speech_corpus({"kind": "generated_speech", "num_utterances": 0}, 0)
    with pytest.raises(ConfigError, match="'flac' does not apply"):
        build_speech_corpus({"kind": "generated_speech", "audio": "flac"}, 0)
    with pytest.raises(ConfigError, match="colour"):
        build_speech_corpus({"kind": "generated_speech", "colour": 1}, 0)
    with pytest.raises(DatasetError, match=r"transcripts: .*absent.trans.txt does not exist"):
        build_speech_corpus({"kind": "librispeech", "transcripts": [str(tmp_path / "absent.trans.txt")],
                             "vocab": str(tmp_path / "v")}, 0)
    monkeypatch.setattr("labelleak.data.speech.shutil.which", lambda name: None)
    with pytest.raises(DatasetError, match="espeak-ng"):
        build_speech_corpus({"kind": "generated_speech", "audio": "espeak"}, 0)


@pytest.fixture
def tiny_librispeech(tmp_path):
    """Six utterances, a vocabulary that covers them, a selection and a 2x1 grouping, in tmp_path."""
    trans = _write(tmp_path / "ls" / "test-clean" / "1" / "2" / "1-2.trans.txt",
                   "1-2-0000 THE CAT\n1-2-0001 A CAT SAT\n1-2-0002 THE END\n1-2-0003 CATS\n"
                   "1-2-0004 SAT\n1-2-0005 THE THE\n")
    vocab = _write(tmp_path / "v.vocab", "\n".join(["<unk>", "<s>", "</s>", "<noise>", "<epsilon>", WORD_START,
                                                   *"thecasndx", "\u2581the", "\u2581cat", "\u2581a", "\u2581sat",
                                                   "\u2581end"]) + "\n")
    sel = _write(tmp_path / "sel.ids", "1-2-0000\n1-2-0001\n1-2-0003\n1-2-0005\n")
    grp = _write(tmp_path / "g2.txt", "1-2-0001,1-2-0000\n1-2-0005,1-2-0003\n")
    spec = {"kind": "librispeech", "transcripts": [str(tmp_path / "ls")], "vocab": str(vocab),
            "selection": str(sel), "audio": "synthetic", "audio_root": None, "groupings": {"2x1": str(grp)}}
    return spec, trans


def test_librispeech_corpus_from_files(tiny_librispeech, tmp_path):
    spec, _ = tiny_librispeech
    corpus = build_speech_corpus(spec, seed=0)
    v = corpus.vocab
    assert corpus.ids == ["1-2-0000", "1-2-0001", "1-2-0003", "1-2-0005"]
    assert corpus.utterances["1-2-0000"] == [v.id("\u2581the"), v.id("\u2581cat")]
    assert corpus.utterances["1-2-0003"] == [v.id("\u2581cat"), v.id("s")]
    assert corpus.texts["1-2-0001"] == "A CAT SAT"
    assert corpus.features("1-2-0005").shape[1] == 80
    assert corpus_groups(spec, corpus, 2, 1, 1, 0) == [[["1-2-0001", "1-2-0000"]]]
    assert corpus_groups(spec, corpus, 2, 1, None, 0) == read_grouping(spec["groupings"]["2x1"])
    assert grouping_shape(corpus_groups(spec, corpus, 1, 2, 2, 0)) == (1, 2)  # no file: generated grouping
    with pytest.raises(DatasetError, match="has 2 groups, 3 were asked"):
        corpus_groups(spec, corpus, 2, 1, 3, 0)
    train = training_utterances(spec, corpus, None, seed=0)
    assert train.ids == ["1-2-0002", "1-2-0004"] and train.texts["1-2-0002"] == "THE END"
    assert len(training_utterances(spec, corpus, 1, seed=0)) == 1
    rule = build_speech_corpus({**spec, "selection": "paper_rule"}, seed=0)
    assert len(rule) == 6
    with pytest.raises(DatasetError, match="selection: .*'9-9-9'"):
        build_speech_corpus({**spec, "selection": str(_write(tmp_path / "s2.ids", "9-9-9\n"))}, 0)
    bad = {**spec, "groupings": {"2x1": str(_write(tmp_path / "g3.txt", "1-2-0001|1-2-0000\n"))}}
    with pytest.raises(DatasetError, match=r"shape \(1, 2\)"):
        corpus_groups(bad, corpus, 2, 1, 1, 0)
    with pytest.raises(DatasetError, match="vocab: "):
        build_speech_corpus({**spec, "vocab": str(tmp_path / "none.vocab")}, 0)
    with pytest.raises(DatasetError, match="groupings.2x1: "):
        corpus_groups({**spec, "groupings": {"2x1": str(tmp_path / "none.txt")}}, corpus, 2, 1, 1, 0)


def test_librispeech_flac_features(tiny_librispeech, monkeypatch, tmp_path):
    spec, _ = tiny_librispeech
    flac = tmp_path / "audio" / "test-clean" / "1" / "2" / "1-2-0000.flac"
    flac.parent.mkdir(parents=True)
    flac.write_bytes(b"")
    spec = {**spec, "audio": "flac", "audio_root": str(tmp_path / "audio")}
    monkeypatch.setitem(sys.modules, "soundfile", None)
    with pytest.raises(DatasetError, match="soundfile"):
        build_speech_corpus(spec, 0)
    monkeypatch.setitem(sys.modules, "soundfile", types.ModuleType("soundfile"))  # pretend it is installed
    with pytest.raises(ConfigError, match="audio_root"):
        build_speech_corpus({**spec, "audio_root": None}, 0)
    with pytest.raises(DatasetError, match="audio_root: "):
        build_speech_corpus({**spec, "audio_root": str(tmp_path / "no-audio")}, 0)
    seen = []

    def fake_read_flac(path):
        seen.append(Path(path))
        return _tone(1000.0, 1.0, 8000), 8000  # resampled to 16 kHz

    monkeypatch.setattr("labelleak.data.speech.read_flac", fake_read_flac)
    corpus = build_speech_corpus(spec, 0)
    feats = corpus.features("1-2-0000")
    assert seen == [flac] and feats.shape == (98, 80)
    with pytest.raises(DatasetError, match="no 1-2-0001.flac"):
        corpus.features("1-2-0001")


def test_shared_librispeech_corpus(shared_texts):
    spec = {"kind": "librispeech", "transcripts": [str(p) for p in TRANS], "vocab": str(VOCAB),
            "selection": str(SAMPLES / "test-sorted_less_50.ids"), "audio": "synthetic", "audio_root": None,
            "groupings": {"2x1": str(SAMPLES / "test_less_50_group_2.txt"),
                          "1x4": str(SAMPLES / "test_less_50_step_4.txt"),
                          "2x2": str(SAMPLES / "test_less_50_group_2_step_2.txt")}}
    corpus = build_speech_corpus(spec, seed=0)
    assert len(corpus) == 402 and corpus.ids == read_id_list(SAMPLES / "test-sorted_less_50.ids")
    assert sum(len(ids) for ids in corpus.utterances.values()) == sum(n * c for n, c in PAPER_LENGTHS.items())
    assert corpus_groups(spec, corpus, 2, 1, 201, 0) == read_grouping(SAMPLES / "test_less_50_group_2.txt")
    assert grouping_shape(corpus_groups(spec, corpus, 1, 4, 10, 0)) == (1, 4)
    assert len(corpus_groups(spec, corpus, 2, 2, 100, 0)) == 100
    train = training_utterances(spec, corpus, None, seed=0)
    assert len(train) == 5559 - 402 and not set(train.ids) & set(corpus.ids)
    rule_spec = {**spec, "selection": "paper_rule"}
    rule = build_speech_corpus(rule_spec, seed=0)
    assert len(rule) == 402
    with pytest.raises(DatasetError, match="not in the corpus selection"):  # tie picks differ from the paper's
        corpus_groups(rule_spec, rule, 2, 1, 201, 0)


def test_stable_id_seed():
    assert stable_id_seed("1-2-3") == stable_id_seed("1-2-3") != stable_id_seed("1-2-4")
    assert 0 <= stable_id_seed("x") < 2 ** 63
