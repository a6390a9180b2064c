"""Acoustic features for the ASR model: log-mel of real audio, or synthetic per-piece frames.

The attack only reads the gradient of the output layer, so the input features matter only in that
the model must be able to learn the task. Three sources, all ``(T, n_mels)`` float32:

* :func:`log_mel` of a waveform (LibriSpeech ``.flac`` or speech synthesised by
  :func:`espeak_waveform`), like lingvo's front end: 25 ms Hann windows every 10 ms,
  pre-emphasis 0.97, power spectrum, 80 HTK-mel filters over 125-7600 Hz, log with a floor;
* :func:`synthetic_features`: each piece id becomes a few frames of its own random spectral
  pattern plus noise, so a small model can learn to read the pieces back, with no audio at all.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Sequence
from math import gcd
from pathlib import Path

import numpy as np

from labelleak.errors import DatasetError

# Domain tags that keep the per-piece pattern and the per-utterance noise streams apart.
_PATTERN, _NOISE = 0x5054, 0x4E5A


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale: ``2595 log10(1 + f / 700)``."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, lower_hz: float = 125.0,
                   upper_hz: float = 7600.0) -> np.ndarray:
    """``(n_fft // 2 + 1, n_mels)`` triangular filters, equally spaced on the HTK mel scale.

    Filter m rises from edge m to its centre (edge m + 1) and falls to edge m + 2, with the
    ``n_mels + 2`` edges equally spaced in mel between ``lower_hz`` and ``upper_hz``.
    """
    upper_hz = min(upper_hz, sample_rate / 2)
    if not 0 <= lower_hz < upper_hz:
        raise ValueError(f"need 0 <= lower_hz < upper_hz <= sample_rate / 2, got {lower_hz}, {upper_hz}")
    edges = mel_to_hz(np.linspace(hz_to_mel(lower_hz), hz_to_mel(upper_hz), n_mels + 2))
    freqs = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    lo, mid, hi = edges[:-2], edges[1:-1], edges[2:]
    rise = (freqs[:, None] - lo) / (mid - lo)
    fall = (hi - freqs[:, None]) / (hi - mid)
    return np.clip(np.minimum(rise, fall), 0.0, None)


def log_mel(waveform: np.ndarray, sample_rate: int = 16000, n_mels: int = 80, win_ms: float = 25.0,
            hop_ms: float = 10.0, preemphasis: float = 0.97, lower_hz: float = 125.0,
            upper_hz: float = 7600.0, floor: float = 1e-6) -> np.ndarray:
    """``(T, n_mels)`` float32 log-mel energies of a mono waveform (1 s at 16 kHz: T = 98).

    ``T = 1 + (len - win) // hop`` (one frame when the audio is shorter than a window, zero-padded);
    FFT size: the power of two >= the window. ``preemphasis = 0`` turns pre-emphasis off.
    """
    x = np.asarray(waveform, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"waveform must be a non-empty 1-D array, got shape {x.shape}")
    if preemphasis:
        x = np.concatenate([x[:1], x[1:] - preemphasis * x[:-1]])
    win = int(round(sample_rate * win_ms / 1000))
    hop = int(round(sample_rate * hop_ms / 1000))
    if x.size < win:
        x = np.pad(x, (0, win - x.size))
    n_frames = 1 + (x.size - win) // hop
    frames = np.lib.stride_tricks.sliding_window_view(x, win)[::hop][:n_frames]
    n_fft = 1 << (win - 1).bit_length()
    power = np.abs(np.fft.rfft(frames * np.hanning(win), n=n_fft, axis=1)) ** 2
    mel = power @ mel_filterbank(n_mels, n_fft, sample_rate, lower_hz, upper_hz)
    return np.log(np.maximum(mel, floor)).astype(np.float32)


@functools.lru_cache(maxsize=65536)
def _piece_pattern(seed: int, piece_id: int, n_mels: int, min_frames: int, max_frames: int) -> tuple[np.ndarray, int]:
    rng = np.random.default_rng([seed, _PATTERN, piece_id])
    pattern = rng.standard_normal(n_mels).astype(np.float32)
    pattern.setflags(write=False)
    return pattern, int(rng.integers(min_frames, max_frames + 1))


def synthetic_features(token_ids: Sequence[int], seed: int, n_mels: int = 80, min_frames: int = 3,
                       max_frames: int = 6, noise: float = 0.1, utterance_seed: int = 0) -> np.ndarray:
    """``(T, n_mels)`` float32 frames that spell ``token_ids``: a learnable stand-in for speech.

    Piece p is its pattern ``N(0, I)`` repeated for its own length in ``[min_frames, max_frames]``,
    both drawn from ``default_rng([seed, PATTERN, p])`` on demand (no table for 16k pieces); then
    ``noise * N(0, 1)`` from ``default_rng([seed, NOISE, utterance_seed])`` is added to every value.
    """
    if not 1 <= min_frames <= max_frames:
        raise ValueError(f"need 1 <= min_frames <= max_frames, got {min_frames}, {max_frames}")
    if len(token_ids) == 0:
        return np.zeros((0, n_mels), dtype=np.float32)
    parts = []
    for pid in token_ids:
        pattern, reps = _piece_pattern(int(seed), int(pid), n_mels, min_frames, max_frames)
        parts.append(np.broadcast_to(pattern, (reps, n_mels)))
    feats = np.concatenate(parts, axis=0)
    rng = np.random.default_rng([int(seed), _NOISE, int(utterance_seed)])
    return (feats + noise * rng.standard_normal(feats.shape, dtype=np.float32)).astype(np.float32)


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """(mono float32 waveform in [-1, 1], sample rate) of a 8/16/32-bit PCM wav (stdlib ``wave``)."""
    try:
        with wave.open(str(path), "rb") as wf:
            width, channels, rate = wf.getsampwidth(), wf.getnchannels(), wf.getframerate()
            raw = wf.readframes(wf.getnframes())
    except (OSError, EOFError, wave.Error) as exc:
        raise DatasetError(f"{path}: not a readable PCM wav file ({exc})") from None
    if width == 1:
        data = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width in (2, 4):
        dtype = np.int16 if width == 2 else np.int32
        data = np.frombuffer(raw, dtype=dtype).astype(np.float32) / float(np.iinfo(dtype).max + 1)
    else:
        raise DatasetError(f"{path}: unsupported sample width of {width} bytes (expected 1, 2 or 4)")
    return data.reshape(-1, channels).mean(axis=1), rate


def resample(waveform: np.ndarray, rate: int, target: int) -> np.ndarray:
    """``waveform`` at ``rate`` Hz resampled to ``target`` Hz (polyphase filter)."""
    if rate == target:
        return np.asarray(waveform, dtype=np.float32)
    from scipy.signal import resample_poly

    g = gcd(int(rate), int(target))
    return resample_poly(waveform, target // g, rate // g).astype(np.float32)


def espeak_waveform(text: str, voice: str = "en-us", sample_rate: int = 16000) -> np.ndarray:
    """Mono float32 speech of ``text`` synthesised by the ``espeak-ng`` program, at ``sample_rate``.

    A stand-in for recorded audio when LibriSpeech's flac files are absent: real acoustics, a
    single synthetic voice. DatasetError when espeak-ng is not installed or fails.
    """
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise DatasetError("espeak-ng is not installed (needed by audio: espeak; e.g. apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory(prefix="labelleak-espeak-") as tmp:
        txt, wav = Path(tmp) / "text.txt", Path(tmp) / "speech.wav"
        txt.write_text(text, encoding="utf-8")
        proc = subprocess.run([exe, "-v", voice, "-w", str(wav), "-f", str(txt)],
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0 or not wav.is_file():
            msg = (proc.stderr or proc.stdout).strip().splitlines()
            first = msg[0] if msg else "no output"
            raise DatasetError(f"espeak-ng failed on {text[:40]!r} (exit {proc.returncode}: {first})")
        data, rate = read_wav(wav)
    return resample(data, rate, sample_rate)
