"""The objective gradients matching minimises on an ASR decoder update (eq. 7 and 8).

The observed update as tensors in the model's order, the soft-label gradients of contexts and
labels (the autograd form), and :class:`_Batch`, the same distance for R runs at once in closed
form. Both reconstructions (:mod:`labelleak.attacks.gm_asr_batched`,
:mod:`labelleak.attacks.gm_asr_sequential`) match against these; keeping them apart from the
optimisation loops keeps the objective in one place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from labelleak.errors import NotApplicable

SOS, EOS = 1, 2  # as labelleak.models.asr


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
