"""An attention encoder-decoder ASR model (listen-attend-spell style), as in section 2.5.2 of Dang et al.

The paper's lingvo model (``Librispeech960Wpm``): a 4x1024 bi-LSTM encoder, a 2x1024 LSTM decoder
with additive (tanh) attention, and a softmax projection over 16328 word pieces whose input is the
decoder output concatenated with the attention context (3072 = 1024 + 2048). This module keeps that
structure with configurable sizes.

Decoding step i (teacher forcing, targets ``y_0..y_{S-1}`` ending in ``</s>``, ``y_{-1} = <s>``)::

    s_i = LSTM([E(y_{i-1}), a_{i-1}], state)        # a_{-1} = 0
    a_i = sum_t softmax_t(v . tanh(W_q s_i + W_k h_t)) h_t
    z_i = P [s_i; a_i] + b                           # the projection layer: H rows [s_i; a_i]

:meth:`ListenAttendSpell.decode_with_contexts` runs the same decoder on given previous-token
embeddings and given contexts ``a_i`` with no encoder at all: that is what gradients matching
optimises (eq. 8 of the paper: the attacker needs neither the audio nor its length T).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

SOS, EOS = 1, 2  # ids of <s> and </s> in the wordpiece vocabularies (labelleak.data.wordpiece)


@dataclass(frozen=True)
class ASRBatch:
    """Padded tensors for a batch of utterances (see :func:`make_batch`)."""

    features: torch.Tensor  # (B, T, n_mels) float32, zero-padded
    feature_lengths: torch.Tensor  # (B,) int64
    inputs: torch.Tensor  # (B, S) int64: <s> y_0 .. y_{S-2}, padded with EOS
    targets: torch.Tensor  # (B, S) int64: y_0 .. y_{S-1} (= </s>), padded with EOS
    mask: torch.Tensor  # (B, S) bool: True on real target positions

    @property
    def num_targets(self) -> int:
        """S of the paper: target positions in the batch (tokens plus one </s> per utterance)."""
        return int(self.mask.sum())


def make_batch(features: Sequence, token_ids: Sequence[Sequence[int]]) -> ASRBatch:
    """Pad utterances: ``features[i]`` is a (T_i, n_mels) array, ``token_ids[i]`` its pieces (no <s>, </s>)."""
    if len(features) != len(token_ids) or not features:
        raise ValueError(f"{len(features)} feature arrays for {len(token_ids)} transcripts")
    feats = [torch.as_tensor(f, dtype=torch.float32) for f in features]
    lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.int64)
    padded = torch.zeros(len(feats), int(lengths.max()), feats[0].shape[1])
    for i, f in enumerate(feats):
        padded[i, : f.shape[0]] = f
    s = max(len(t) for t in token_ids) + 1
    inputs = torch.full((len(feats), s), EOS, dtype=torch.int64)
    targets = torch.full((len(feats), s), EOS, dtype=torch.int64)
    mask = torch.zeros(len(feats), s, dtype=torch.bool)
    for i, toks in enumerate(token_ids):
        seq = list(toks)
        inputs[i, : len(seq) + 1] = torch.tensor([SOS] + seq)
        targets[i, : len(seq) + 1] = torch.tensor(seq + [EOS])
        mask[i, : len(seq) + 1] = True
    return ASRBatch(padded, lengths, inputs, targets, mask)


class ListenAttendSpell(nn.Module):
    """bi-LSTM encoder, LSTM decoder with additive attention, projection over the vocabulary."""

    def __init__(self, vocab_size: int, *, n_mels: int = 80, encoder_hidden: int = 64, encoder_layers: int = 2,
                 decoder_hidden: int = 64, decoder_layers: int = 1, embedding_dim: int = 32,
                 attention_dim: int = 64, subsample: int = 2):
        super().__init__()
        self.vocab_size = vocab_size
        self.subsample = subsample
        self.context_dim = 2 * encoder_hidden
        self.encoder = nn.LSTM(n_mels * subsample, encoder_hidden, encoder_layers, batch_first=True,
                               bidirectional=True)
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        sizes = [embedding_dim + self.context_dim] + [decoder_hidden] * decoder_layers
        self.decoder = nn.ModuleList(nn.LSTMCell(sizes[i], sizes[i + 1]) for i in range(decoder_layers))
        self.query = nn.Linear(decoder_hidden, attention_dim, bias=False)
        self.key = nn.Linear(self.context_dim, attention_dim)
        self.energy = nn.Linear(attention_dim, 1, bias=False)
        self.projection = nn.Linear(decoder_hidden + self.context_dim, vocab_size)

    # -- encoder and attention
    def encode(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stack ``subsample`` frames, run the bi-LSTM: (B, T', 2*hidden) outputs and a (B, T') frame mask."""
        b, t, m = features.shape
        t2 = -(-t // self.subsample)
        x = F.pad(features, (0, 0, 0, t2 * self.subsample - t)).reshape(b, t2, m * self.subsample)
        lens = torch.clamp(-(-lengths // self.subsample), min=1)
        packed = pack_padded_sequence(x, lens.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.encoder(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=t2)
        mask = torch.arange(t2, device=features.device)[None, :] < lens.to(features.device)[:, None]
        return out, mask

    def attend(self, state: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor):
        """Additive attention: the context (B, 2*hidden) for decoder output ``state`` (B, hidden)."""
        scores = self.energy(torch.tanh(self.query(state)[:, None, :] + keys)).squeeze(-1)
        scores = scores.masked_fill(~mask, float("-inf"))
        return torch.bmm(torch.softmax(scores, dim=1)[:, None, :], values).squeeze(1)

    # -- decoder
    def _initial_state(self, batch: int, ref: torch.Tensor):
        return [(ref.new_zeros(batch, c.hidden_size), ref.new_zeros(batch, c.hidden_size)) for c in self.decoder]

    def _step(self, x: torch.Tensor, states):
        new = []
        for cell, (h, c) in zip(self.decoder, states):
            h, c = cell(x, (h, c))
            new.append((h, c))
            x = h
        return x, new

    def softmax_inputs(self, batch: ASRBatch) -> torch.Tensor:
        """H of the paper for every decoding step: (B, S, decoder_hidden + context_dim) = [s_i; a_i]."""
        values, mask = self.encode(batch.features, batch.feature_lengths)
        keys = self.key(values)
        emb = self.embedding(batch.inputs)
        b, s = batch.inputs.shape
        states = self._initial_state(b, values)
        context = values.new_zeros(b, self.context_dim)
        rows = []
        for i in range(s):
            out, states = self._step(torch.cat([emb[:, i], context], dim=1), states)
            context = self.attend(out, keys, values, mask)
            rows.append(torch.cat([out, context], dim=1))
        return torch.stack(rows, dim=1)

    def forward(self, batch: ASRBatch) -> torch.Tensor:
        """Logits (B, S, V) under teacher forcing."""
        return self.projection(self.softmax_inputs(batch))

    def decode_with_contexts(self, prev_embeddings: torch.Tensor, contexts: torch.Tensor) -> torch.Tensor:
        """Logits (S, V) of one sequence from given previous-token embeddings (S, e) and contexts (S, d_A).

        Row i uses ``prev_embeddings[i]`` (the embedding of y_{i-1}; row 0: that of <s>) and
        ``contexts[i-1]`` as the LSTM input and ``contexts[i]`` in the projection: the decoder of
        :meth:`forward` with the attention replaced by the given contexts.
        """
        states = self._initial_state(1, contexts)
        prev_context = contexts.new_zeros(1, self.context_dim)
        rows = []
        for i in range(contexts.shape[0]):
            out, states = self._step(torch.cat([prev_embeddings[i : i + 1], prev_context], dim=1), states)
            rows.append(torch.cat([out, contexts[i : i + 1]], dim=1))
            prev_context = contexts[i : i + 1]
        return self.projection(torch.cat(rows, dim=0))

    def decoder_parameters(self) -> dict[str, nn.Parameter]:
        """The decoder weights gradients matching observes: embedding, decoder LSTM, projection.

        The attention weights are left out: with the contexts as free variables they take no part
        in :meth:`decode_with_contexts`.
        """
        return {n: p for n, p in self.named_parameters() if n.split(".")[0] in ("embedding", "decoder", "projection")}


def sequence_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy averaged over the real target positions of the batch (S of them)."""
    flat = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    return (flat * mask.reshape(-1)).sum() / mask.sum()


def soft_label_loss(logits: torch.Tensor, soft_labels: torch.Tensor) -> torch.Tensor:
    """Eq. 7 of the paper with smooth labels P (S, V), averaged over the S positions like :func:`sequence_loss`."""
    return -(soft_labels * torch.log_softmax(logits, dim=-1)).sum() / logits.shape[0]


def build_asr_model(vocab_size: int, **sizes) -> ListenAttendSpell:
    """The ASR model from the config's size keys (see config/config.yaml ``speech.model``)."""
    return ListenAttendSpell(vocab_size, **sizes)
