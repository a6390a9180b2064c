"""rlg_counts (ours) against iLRG: exact-count rate, residual and seconds per update (issue 16).

    python benchmarks/bench_counts.py [--seeds 5] [--quick]

Updates are computed here by autograd (float64 unless said): trained heads (tests/rlg_cases.head,
median logit margin 12) with repeated labels, K = 4 client updates of a whole model (a fresh batch
each step, the body trains along; untrained at lr 1, or trained on a Gaussian mixture at lr 0.1),
and the same in float32 as the pipeline stores them. One CPU thread. Prints one row per regime:
exact counts of ours and of iLRG, proven, n/a (left out of the rest), median / max residual and seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from rlg_cases import head

from labelleak.attacks import run_attack
from labelleak.updates.format import Observation


def repeated(rng, C, n, distinct):
    classes = rng.choice(C, distinct, replace=False)
    y = np.concatenate([classes, rng.choice(classes, n - distinct)])
    rng.shuffle(y)
    return y


def trained_head(seed, C, N, distinct, d=256, act="relu", dtype=np.float64):
    rng = np.random.default_rng(seed)
    y = repeated(rng, C, N, distinct)
    H, W, b = head(rng, y, d, C, act, trained=True)
    layer = nn.Linear(d, C).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(W.T))
        layer.bias.copy_(torch.tensor(b))
    F.cross_entropy(layer(torch.tensor(H)), torch.as_tensor(y)).backward()
    cast = lambda a: np.asarray(a, dtype=dtype)
    return Observation(dW=cast(layer.weight.grad.T.numpy()), db=cast(layer.bias.grad.numpy()), W=cast(W), b=cast(b),
                       batch_size=N, steps=1), y


def client(seed, C=100, d=64, N=8, K=4, distinct=10, lr=1.0, trained=False, dtype=torch.float64):
    rng = np.random.default_rng(seed)
    y = repeated(rng, C, N * K, distinct)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 1)
    model = nn.Sequential(nn.Linear(32, d), nn.ReLU(), nn.Linear(d, C)).to(dtype)
    mu = torch.randn(C, 32, generator=g, dtype=dtype)
    sample = (lambda lab: mu[lab] + 0.5 * torch.randn(len(lab), 32, generator=g, dtype=dtype)) if trained else \
        (lambda lab: torch.randn(len(lab), 32, generator=g, dtype=dtype))
    if trained:  # a classifier of the mixture, logits peaked (median margin ~9)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(300):
            lab = torch.randint(C, (256,), generator=g)
            opt.zero_grad()
            F.cross_entropy(model(sample(lab)), lab).backward()
            opt.step()
    W0, b0 = model[2].weight.detach().clone(), model[2].bias.detach().clone()
    for k in range(K):
        lab = torch.as_tensor(y[k * N:(k + 1) * N])
        model.zero_grad()
        F.cross_entropy(model(sample(lab)), lab).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= lr * p.grad
    as_np = lambda t: t.detach().numpy().copy()
    return Observation(dW=as_np((W0 - model[2].weight) / lr).T.copy(), db=as_np((b0 - model[2].bias) / lr),
                       W=as_np(W0).T.copy(), b=as_np(b0), batch_size=N, steps=K, meta={"local_lr": lr}), y


def row(name, make, seeds):
    ours, ilrg, proven, res, secs, na = [], [], [], [], [], 0
    for seed in range(seeds):
        obs, y = make(seed)
        truth = dict(Counter(y.tolist()))
        rec = run_attack("rlg_counts", obs)
        if rec["status"] != "ok":
            na += 1
            reason = rec["reason"]
            continue
        il = run_attack("ilrg", obs)
        ours.append({int(c): v for c, v in rec["counts"].items()} == truth)
        ilrg.append(il["status"] == "ok" and {int(c): v for c, v in il["counts"].items()} == truth)
        proven.append(rec["info"]["proven"])
        res.append(rec["info"]["residual"])
        secs.append(rec["seconds"])
    if not ours:
        print(f"| {name} | n/a {na}/{seeds}: {reason} |")
        return
    print(f"| {name} | {sum(ours)}/{len(ours)} | {sum(ilrg)}/{len(ilrg)} | {sum(proven)}/{len(proven)} | {na} | "
          f"{np.median(res):.1e} / {np.max(res):.1e} | {np.median(secs):.1f} / {np.max(secs):.1f} |", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="the 1-step rows and one K-step row only")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print("| update (C, N, distinct labels) | ours exact | iLRG exact | ours proven | ours n/a | residual med / max | "
          "seconds med / max |")
    print("|---|---|---|---|---|---|---|")
    for C, N, k in [(100, 16, 8), (100, 32, 13), (100, 48, 20), (200, 64, 26)]:
        row(f"trained head, 1 step (C={C}, N={N}, {k})", lambda s, C=C, N=N, k=k: trained_head(s, C, N, k), args.seeds)
    row("trained head, 1 step (C=100, N=64, 26)", lambda s: trained_head(s, 100, 64, 26), 1)
    row("trained head, 1 step, float32 (C=100, N=32, 13)",
        lambda s: trained_head(s, 100, 32, 13, dtype=np.float32), args.seeds)
    row("K=4 client, untrained, lr 1 (C=100, 4x8, 10)", lambda s: client(s), args.seeds)
    if not args.quick:
        row("K=4 client, trained, lr 0.1 (C=100, 4x8, 10)", lambda s: client(s, lr=0.1, trained=True), args.seeds)
        row("K=4 client, untrained, lr 1, float32 (C=100, 4x8, 10)",
            lambda s: client(s, dtype=torch.float32), args.seeds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
