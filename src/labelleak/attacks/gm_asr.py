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
leading run dimension; per-run gradients in closed form, :class:`_Batch`), with early stopping on
the attacker-side distance (``tol``, ``plateau``) and the distance of every step in
:attr:`Run.history`. :func:`reconstruct_sequential` is the former run-after-run implementation
(benchmarks/bench_gm.py compares them). Measured on the default config's model (stage 1k): the
free contexts of eq. 8 cannot reproduce the decoder-LSTM and embedding parts of the update, since
the real contexts depend on the decoder state through the attention: at the TRUE contexts and
labels the relative distance is about 2e-2 (projection part: 1e-14), so wrong transcripts can
have a lower distance than the right one and best-of-R selection is unreliable there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from labelleak.attacks.base import Prediction, register
from labelleak.data.wordpiece import SPECIAL_MAX_ID
from labelleak.errors import NotApplicable
from labelleak.updates.format import Observation

PAPER = "Dang et al., Revealing and Protecting Labels in Distributed Training, NeurIPS 2021"
SOS, EOS = 1, 2  # as labelleak.models.asr
SPECIAL_MAX = SPECIAL_MAX_ID  # ids <= 2 (<unk>, <s>, </s>) are not words (the paper's report script)
OPTIMIZERS = ("adam", "sgd")
#: Options of :func:`reconstruct` the attacks pass through beyond the paper's (see its docstring).
EXTRA_OPTIONS = ("optimizer", "schedule", "momentum", "tol", "plateau", "plateau_factor", "batch_runs",
                 "context_scale", "context_subspace", "match", "free_cotangents")
MATCHES = ("decoder", "projection")
SCHEDULES = ("halving", "cosine", "constant")

#: Paper values (sec. 4.2). ``max_steps`` is a cap the paper does not state.
PAPER_DEFAULTS = dict(lr=0.05, halve_every=4000, min_lr=0.005, patience=2000, max_steps=100_000, reg_weight=1.0)


@dataclass(frozen=True)
class Run:
    """One reconstruction: decoded piece ids (without </s>), final gradient distance, steps taken."""

    transcript: list[int]
    distance: float  # squared distance to the observed decoder update (gm.gradient_distance)
    relative_distance: float  # the same divided by the observed update's squared norm
    steps: int
    history: list[float] = field(default_factory=list)  # relative distance at each step (4 digits)
    stopped: str = ""  # why the run ended: tol, plateau, patience (transcript unchanged) or max_steps


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


class _Batch:
    """The decoder of one model as functions of R runs' contexts and labels at once (no per-run loop).

    Every tensor carries a leading run dimension and no operation mixes runs, so the per-run
    gradient distances of one forward/backward are exactly those of R separate ones. Every matched
    tensor is a linear layer's, so each run's gradient is a sum of outer products of that run's
    cotangents and inputs (no per-run copy of the weights): ``dL/dW_proj = G^T H`` and
    ``dL/db = sum_i G_i`` with ``G = (softmax(z) * rowsum(P) - P) / S``; the LSTM's from the
    cotangents of its gate pre-activations (one double-backward pass through the decoder, seeded
    with ``dL/dH = G W``); the embedding's rows ``P_{i-1}^T dL/dprev_i`` plus E(<s>)'s. The
    projection's distance uses ``||G^T H - T||^2 = sum((G G^T) * (H H^T)) - 2 sum((G Q) * (H M^T))
    + ||T||^2`` with ``T = Q M`` the observed update's thin SVD (its numerical rank, about S),
    never the (V, d) gradient of each run.
    """

    def __init__(self, model, target: dict, columns: Sequence[int] | None, device, scale: float,
                 rank_rtol: float = 1e-6, projection_only: bool = False):
        import torch

        self.projection_only = projection_only  # match the projection layer's update alone
        self.const_rest = float(sum((t.double() ** 2).sum() for n, t in target.items() if not n.startswith("projection")))

        self.device, self.scale = device, scale  # the client loss is divided by scale
        E = model.embedding.weight.detach()
        self.V = E.shape[0]
        self.cols = None if columns is None else torch.tensor(columns, dtype=torch.int64, device=device)
        rows = sorted(set(range(self.V)) if columns is None else set(columns) | {SOS})
        self.rows = torch.tensor(rows, dtype=torch.int64, device=device)
        pos = {c: i for i, c in enumerate(rows)}
        self.sos_row = torch.tensor([pos[SOS]], device=device)
        self.col_rows = None if columns is None else torch.tensor([pos[c] for c in columns], device=device)
        self.E_sos = E[SOS]
        self.E_cols = E if columns is None else E[self.cols]
        self.W = model.projection.weight.detach()
        self.b = model.projection.bias.detach()
        self.cells = [(c.weight_ih.detach(), c.weight_hh.detach(), (c.bias_ih + c.bias_hh).detach())
                      for c in model.decoder]
        self.T_cells = [(target[f"decoder.{i}.weight_ih"], target[f"decoder.{i}.weight_hh"],
                         target[f"decoder.{i}.bias_ih"], target[f"decoder.{i}.bias_hh"])
                        for i in range(len(model.decoder))]
        self.TW, self.Tb = target["projection.weight"], target["projection.bias"]
        TE = target["embedding.weight"]
        self.TE_rows = TE[self.rows]
        self.const_E = float((TE.double() ** 2).sum() - (self.TE_rows.double() ** 2).sum())
        self.TW2 = float((self.TW.double() ** 2).sum())
        U, sv, Vh = torch.linalg.svd(self.TW.double(), full_matrices=False)
        keep = sv > rank_rtol * sv[0] if sv.numel() and sv[0] > 0 else sv > 0
        self.TQ = (U[:, keep] * sv[keep]).to(self.TW.dtype)  # (V, r)
        self.TM = Vh[keep].to(self.TW.dtype)  # (r, d)

    def distance(self, A, P, *, exact: bool = False, U=None):
        """(R,) relative gradient distances of runs with contexts A (R, S, d_A) and labels P (R, S, K).

        ``exact``: the reported distance instead, in float64 with each run's projection gradient
        materialised (the closed form loses digits to cancellation near 0); no graph.
        """
        import torch

        R, S = P.shape[0], P.shape[1]
        if not P.requires_grad:  # dL/dprev is taken through P's embedding rows
            P = P.detach().requires_grad_(True)
        prev = torch.cat([self.E_sos.expand(R, 1, -1), P[:, :-1] @ self.E_cols], dim=1)  # (R, S, e)
        hs = [A.new_zeros(R, c[1].shape[1]) for c in self.cells]
        cs = [h.clone() for h in hs]
        ctx = A.new_zeros(R, A.shape[2])
        outs, gates_in, inputs, hiddens = [], [[] for _ in self.cells], [[] for _ in self.cells], \
            [[] for _ in self.cells]
        for i in range(S):
            x = torch.cat([prev[:, i], ctx], dim=1)
            for layer, (w_ih, w_hh, bias) in enumerate(self.cells):
                gates = x @ w_ih.T + hs[layer] @ w_hh.T + bias
                gates_in[layer].append(gates)
                inputs[layer].append(x)
                hiddens[layer].append(hs[layer])
                ig, fg, gg, og = gates.chunk(4, dim=1)
                cs[layer] = torch.sigmoid(fg) * cs[layer] + torch.sigmoid(ig) * torch.tanh(gg)
                hs[layer] = torch.sigmoid(og) * torch.tanh(cs[layer])
                x = hs[layer]
            outs.append(x)
            ctx = A[:, i]
        H = torch.cat([torch.stack(outs, dim=1), A], dim=2)  # (R, S, d): the rows [s_i; a_i]
        logits = H @ self.W.T + self.b  # (R, S, V)
        Pfull = P if self.cols is None else P.new_zeros(R, S, self.V).index_copy(2, self.cols, P)
        G = (torch.softmax(logits, dim=2) * P.sum(dim=2, keepdim=True) - Pfull) / (S * self.scale)
        d = ((G.sum(dim=1) - self.Tb) ** 2).sum(dim=1)
        if self.projection_only:
            d = d + self.const_rest
        else:
            d = d + self._rest(A, P, prev, H, G, gates_in, inputs, hiddens, U, exact)
        if exact:
            gW = G.detach().transpose(1, 2).double() @ H.detach().double()  # (R, V, d)
            return (d.detach().double() + ((gW - self.TW.double()) ** 2).sum(dim=(1, 2))).detach()
        gram = ((G @ G.transpose(1, 2)) * (H @ H.transpose(1, 2))).sum(dim=(1, 2))
        cross = ((G @ self.TQ) * (H @ self.TM.T)).sum(dim=(1, 2))
        return d + gram - 2 * cross + self.TW2

    def _rest(self, A, P, prev, H, G, gates_in, inputs, hiddens, U, exact):
        """(R,) distances of the embedding and decoder-LSTM gradients (one double-backward pass)."""
        import torch

        R, S = P.shape[0], P.shape[1]
        dH = G @ self.W  # dL/dH, differentiable in (A, P)
        if U is not None:  # free cotangents of the LSTM outputs: the attention's unknown backward path
            dH = dH + torch.cat([U, U.new_zeros(R, S, H.shape[2] - U.shape[2])], dim=2)
        flat_gates = [g for layer in gates_in for g in layer]
        grads = torch.autograd.grad(H, [prev, *flat_gates], grad_outputs=dH, create_graph=not exact)
        g_prev = grads[0]
        d = A.new_zeros(R)
        for layer, (t_ih, t_hh, t_bih, t_bhh) in enumerate(self.T_cells):
            dg = torch.stack(grads[1 + layer * S: 1 + (layer + 1) * S], dim=1)  # (R, S, 4h)
            g_ih = dg.transpose(1, 2) @ torch.stack(inputs[layer], dim=1)
            g_hh = dg.transpose(1, 2) @ torch.stack(hiddens[layer], dim=1)
            g_b = dg.sum(dim=1)
            d = d + ((g_ih - t_ih) ** 2).sum(dim=(1, 2)) + ((g_hh - t_hh) ** 2).sum(dim=(1, 2)) \
                + ((g_b - t_bih) ** 2).sum(dim=1) + ((g_b - t_bhh) ** 2).sum(dim=1)
        g_rows = A.new_zeros(R, len(self.rows), prev.shape[2]).index_add(1, self.sos_row, g_prev[:, :1])
        g_cols = P[:, :-1].transpose(1, 2) @ g_prev[:, 1:]  # (R, K, e)
        g_rows = g_rows.index_add(1, self.col_rows, g_cols) if self.col_rows is not None else g_rows + g_cols
        return d + ((g_rows - self.TE_rows) ** 2).sum(dim=(1, 2)) + self.const_E


def _lr_at(step: int, *, lr: float, schedule: str, halve_every: int | None, min_lr: float, max_steps: int) -> float:
    """Learning rate of step ``step`` (1-based): halving every ``halve_every`` steps, cosine, or constant."""
    if schedule == "halving":
        k = (step - 1) // halve_every if halve_every else 0
        return lr if k == 0 else max(min_lr, lr / 2 ** k)  # as match_gradients
    if schedule == "cosine":
        frac = (step - 1) / max(1, max_steps - 1)
        return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * frac))
    if schedule == "constant":
        return lr
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")


def initial_variables(S: int, K: int, context_dim: int, seed: int, run: int, context_scale: float):
    """Run ``run``'s start (the reference code's): small random contexts and random one-hot label rows."""
    import torch

    gen = torch.Generator().manual_seed(run_seed(seed, run))
    A = torch.randn(S, context_dim, generator=gen) * context_scale
    P = torch.zeros(S, K)
    P[torch.arange(S), torch.randint(0, K, (S,), generator=gen)] = 1.0
    return A, P


def reconstruct(model, decoder_update: Mapping[str, np.ndarray], num_positions: int, *,
                bow: Sequence[int] | None = None, runs: int = 1, seed: int = 0,
                lr: float = PAPER_DEFAULTS["lr"], halve_every: int | None = PAPER_DEFAULTS["halve_every"],
                min_lr: float = PAPER_DEFAULTS["min_lr"], patience: int | None = PAPER_DEFAULTS["patience"],
                max_steps: int = PAPER_DEFAULTS["max_steps"], reg_weight: float = PAPER_DEFAULTS["reg_weight"],
                context_scale: float = 0.1, optimizer: str = "adam", schedule: str = "halving",
                momentum: float = 0.9, tol: float | None = None, plateau: int | None = None,
                plateau_factor: float = 0.99, batch_runs: int | None = None,
                context_subspace: bool = False, match: str = "decoder",
                free_cotangents: bool = False) -> list[Run]:
    """``runs`` GM reconstructions (eq. 8) of S = ``num_positions`` decoder positions, in run order.

    ``bow`` restricts the smooth labels to those piece ids (GM + BoW); ``None`` optimises over the
    whole vocabulary (the GM baseline). ``context_scale`` is the std of the initial contexts
    (attention outputs are averages of LSTM outputs, well inside (-1, 1)). Runs on the model's device.

    All runs go through one forward/backward per step (:class:`_Batch`; ``batch_runs`` caps how
    many at once, the result is the same). ``optimizer``: ``adam`` (torch's Adam, betas .9/.999)
    or ``sgd`` (heavy ball, ``momentum``), both per element, hence per run. ``schedule``:
    ``halving`` (lr halved every ``halve_every`` steps down to ``min_lr``, the paper's), ``cosine``
    (lr to ``min_lr`` over ``max_steps``) or ``constant``. A run stops, attacker-side, when its
    relative distance is below ``tol``, when its best distance has not dropped below
    ``plateau_factor`` x itself for ``plateau`` steps, or when its transcript has not changed for
    ``patience`` steps (the paper's rule); each :class:`Run` keeps its relative distance per step.
    """
    import torch

    S = int(num_positions)
    if S < 1:
        raise NotApplicable("no decoder positions to reconstruct (S = 0)")
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    _lr_at(1, lr=lr, schedule=schedule, halve_every=halve_every, min_lr=min_lr, max_steps=max_steps)
    E = model.embedding.weight
    device, V = E.device, E.shape[0]
    _, target = _target(model, decoder_update, device)
    norm2 = float(sum((t.double() ** 2).sum() for t in target))
    if not norm2 > 0:
        raise NotApplicable("the decoder update is zero")
    scale = norm2 ** 0.5
    names = list(model.decoder_parameters())
    columns = None if bow is None else sorted({int(c) for c in bow})
    if columns is not None and (not columns or min(columns) < 0 or max(columns) >= V):
        raise NotApplicable(f"bag of words must be non-empty piece ids in [0, {V})")
    K = V if columns is None else len(columns)
    if match not in MATCHES:
        raise ValueError(f"match must be one of {MATCHES}, got {match!r}")
    eng = _Batch(model, {n: t / scale for n, t in zip(names, target)}, columns, device, scale,
                 projection_only=match == "projection")
    starts = [initial_variables(S, K, model.context_dim, seed, r, context_scale) for r in range(runs)]
    A = torch.stack([a for a, _ in starts]).to(device)
    P = torch.stack([p for _, p in starts]).to(device)
    basis = None
    if context_subspace:  # contexts as C @ basis: the context part of the update's row space
        dh = eng.W.shape[1] - model.context_dim
        Q, _ = torch.linalg.qr(eng.TM[: min(S, eng.TM.shape[0]), dh:].T)  # (d_A, r) orthonormal
        basis = Q.T.contiguous()  # (r, d_A)
        A = (A @ basis.T) * math.sqrt(model.context_dim / basis.shape[0])  # the same scale per context
    to_ctx = (lambda c: c) if basis is None else (lambda c: c @ basis)
    vars_ = [A, P]
    if free_cotangents and match == "decoder":  # start at 0: the surrogate's own gradient
        vars_.append(A.new_zeros(runs, S, eng.W.shape[1] - model.context_dim))
    state = [torch.zeros_like(v) for v in vars_]
    state2 = [torch.zeros_like(v) for v in vars_]
    histories = [[] for _ in range(runs)]
    steps = [0] * runs
    stop = [""] * runs
    best = [math.inf] * runs
    since_best = [0] * runs
    last = [None] * runs
    unchanged = [0] * runs
    active = list(range(runs))
    chunk = int(batch_runs) if batch_runs else runs
    b1, b2, eps = 0.9, 0.999, 1e-8
    with torch.enable_grad():
        for step in range(1, max_steps + 1):
            if not active:
                break
            rate = _lr_at(step, lr=lr, schedule=schedule, halve_every=halve_every, min_lr=min_lr,
                          max_steps=max_steps)
            for c0 in range(0, len(active), chunk):
                idx = torch.tensor(active[c0:c0 + chunk], device=device)
                sub = [v[idx].requires_grad_(True) for v in vars_]
                a, p = sub[0], sub[1]
                dist = eng.distance(to_ctx(a), p, U=sub[2] if len(sub) > 2 else None)
                obj = dist + reg_weight * (p.sum(dim=2) - 1).abs().sum(dim=1)
                grads = torch.autograd.grad(obj.sum(), sub)
                with torch.no_grad():
                    for var, g, m, v in zip(vars_, grads, state, state2):
                        if optimizer == "adam":
                            mi = m[idx].mul_(b1).add_(g, alpha=1 - b1)
                            vi = v[idx].mul_(b2).addcmul_(g, g, value=1 - b2)
                            bc1, bc2 = 1 - b1 ** step, 1 - b2 ** step
                            denom = (vi.sqrt() / math.sqrt(bc2)).add_(eps)
                            var[idx] = var[idx].addcdiv(mi, denom, value=-rate / bc1)
                            m[idx], v[idx] = mi, vi
                        else:  # sgd with heavy-ball momentum (torch.optim.SGD's buffer)
                            mi = g.clone() if step == 1 else m[idx].mul_(momentum).add_(g)
                            var[idx] = var[idx] - rate * mi
                            m[idx] = mi
                objs, dists = obj.detach().tolist(), dist.detach().tolist()
                for j, r in enumerate(active[c0:c0 + chunk]):
                    histories[r].append(float(f"{dists[j]:.4g}"))
                    steps[r] = step
                    if best[r] == math.inf or objs[j] < best[r] * plateau_factor:
                        best[r], since_best[r] = objs[j], 0
                    else:
                        since_best[r] += 1
            for r in list(active):
                if tol is not None and histories[r][-1] < tol:
                    stop[r] = "tol"
                elif plateau and since_best[r] >= plateau:
                    stop[r] = "plateau"
                if patience:
                    now = decode_rows(P[r], columns)
                    unchanged[r] = unchanged[r] + 1 if now == last[r] else 0
                    last[r] = now
                    if unchanged[r] >= patience and not stop[r]:
                        stop[r] = "patience"
                if stop[r]:
                    active.remove(r)
        final = torch.cat([eng.distance(to_ctx(A[i:i + chunk]), P[i:i + chunk], exact=True,
                                        U=vars_[2][i:i + chunk] if len(vars_) > 2 else None)
                           for i in range(0, runs, chunk)])
    return [Run(decode_rows(P[r], columns), float(final[r]) * norm2, float(final[r]), steps[r],
                histories[r], stop[r] or "max_steps") for r in range(runs)]


def reconstruct_sequential(model, decoder_update: Mapping[str, np.ndarray], num_positions: int, *,
                           bow: Sequence[int] | None = None, runs: int = 1, seed: int = 0,
                           lr: float = PAPER_DEFAULTS["lr"], halve_every: int = PAPER_DEFAULTS["halve_every"],
                           min_lr: float = PAPER_DEFAULTS["min_lr"], patience: int = PAPER_DEFAULTS["patience"],
                           max_steps: int = PAPER_DEFAULTS["max_steps"],
                           reg_weight: float = PAPER_DEFAULTS["reg_weight"], context_scale: float = 0.1) -> list[Run]:
    """The former implementation, kept as the reference of benchmarks/bench_gm.py and the tests.

    One run after the other, each step a double backward through :func:`soft_label_gradients`
    with :func:`labelleak.attacks.gm.match_gradients` (torch's Adam, halving schedule, stop on an
    unchanged transcript). The same starts as :func:`reconstruct`.
    """
    import torch

    from labelleak.attacks.gm import match_gradients

    S = int(num_positions)
    E = model.embedding.weight
    device, V = E.device, E.shape[0]
    plist, target = _target(model, decoder_update, device)
    norm2 = float(sum((t.double() ** 2).sum() for t in target))
    if not norm2 > 0:
        raise NotApplicable("the decoder update is zero")
    scale = norm2 ** 0.5
    target = [t / scale for t in target]
    for p in plist:
        p.requires_grad_(True)
    columns = None if bow is None else sorted({int(c) for c in bow})
    col_idx = None if columns is None else torch.tensor(columns, dtype=torch.int64, device=device)
    K = V if columns is None else len(columns)
    results = []
    for r in range(runs):
        A, P = (t.to(device) for t in initial_variables(S, K, model.context_dim, seed, r, context_scale))

        def grads(A=A, P=P):
            return soft_label_gradients(model, A, P, col_idx, scale=scale, create_graph=True)

        res = match_gradients(
            grads, [A, P], target, steps=max_steps, lr=lr, halve_every=halve_every, min_lr=min_lr,
            penalty=lambda P=P: (P.sum(dim=1) - 1).abs().sum(), penalty_weight=reg_weight,
            decode=lambda P=P: decode_rows(P.detach(), columns), patience=patience)
        hist = [float(f"{h:.4g}") for h in res.history]
        results.append(Run(list(res.decoded), res.distance * norm2, res.distance, int(res.steps), hist,
                           "patience" if res.steps < max_steps else "max_steps"))
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
