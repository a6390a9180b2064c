"""Benchmark: fast exact RLG (`reveal_labels`) against the per-class LP of the paper.

Updates come from a random linear-softmax model, as in the last layer of an ImageNet network:
features ``H = act(Z)`` with Gaussian pre-activations Z (S, d), ``W ~ N(0, 0.02^2)``, labels drawn
uniformly at random (so batches have the usual repeated labels), ``G = softmax(HW + b) - onehot``
and ``dW = H^T G / S`` in float32. Each configuration ``C:S[:ref]`` times the fast method on
``--updates`` updates and the reference on the first one: ``ref`` is ``full`` (every class) or a
number of classes, timed and extrapolated to all C (marked ``~``), in which case the sets are
compared on those classes only.

    python benchmarks/bench_rlg.py                       # C=1000 S=50 and S=100, C=16328 S=30 (~2.5 min)
    python benchmarks/bench_rlg.py --config 1000:50:full --d 1280 --act relu --updates 5

BLAS runs single-threaded unless OPENBLAS_NUM_THREADS is set: the method is made of small
matrix operations, and on a busy 2-core machine multithreaded OpenBLAS LAPACK calls (QR, SVD of
tall matrices) slow down 100x or more.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads OpenBLAS; see docstring

import numpy as np  # noqa: E402

from labelleak.attacks.rlg import reveal_labels, right_singular_vectors, separable_reference  # noqa: E402

DEFAULT_CONFIGS = ["1000:50:full", "1000:100:300", "16328:30:12"]


def make_update(rng: np.random.Generator, S: int, d: int, C: int, act: str) -> tuple[np.ndarray, np.ndarray]:
    """(dW float32 (d, C), labels (S,)) of one batch through a random linear-softmax head."""
    Z = rng.standard_normal((S, d))
    H = np.maximum(Z, 0.0) if act == "relu" else Z / (1.0 + np.exp(-Z))
    W = rng.normal(0.0, 0.02, (d, C))
    b = rng.normal(0.0, 0.02, C)
    labels = rng.integers(0, C, S)
    logits = H @ W + b
    G = np.exp(logits - logits.max(axis=1, keepdims=True))
    G /= G.sum(axis=1, keepdims=True)
    G[np.arange(S), labels] -= 1.0
    return (H.T @ G / S).astype(np.float32), labels


def time_reference(dW: np.ndarray, S: int, classes: np.ndarray) -> tuple[set[int], float]:
    """Reference decisions on ``classes`` and its time for all C classes (the LP part
    extrapolated from ``classes`` when they are a subset, the SVD counted once)."""
    start = time.perf_counter()
    Q = right_singular_vectors(dW, S)
    mid = time.perf_counter()
    found = {int(c) for c in classes if separable_reference(Q, int(c))}
    lp_seconds = time.perf_counter() - mid
    return found, (mid - start) + lp_seconds * dW.shape[1] / classes.size


def run_config(spec: str, args, rng: np.random.Generator) -> dict:
    C, S, ref = (spec.split(":") + ["full"])[:3]
    C, S = int(C), int(S)
    fast_times, rows = [], []
    for _ in range(args.updates):
        dW, labels = make_update(rng, S, args.d, C, args.act)
        start = time.perf_counter()
        result = reveal_labels(dW)
        fast_times.append(time.perf_counter() - start)
        rows.append((dW, labels, result))
    dW, labels, result = rows[0]
    if ref == "full":
        classes = np.arange(C)
    else:  # the true labels (present) plus a seeded sample of the rest
        others = rng.permutation(np.setdiff1d(np.arange(C), labels))
        classes = np.union1d(np.unique(labels)[: int(ref) // 4], others[: int(ref) - int(ref) // 4])
    found, ref_total = time_reference(dW, result.num_labels, classes)
    return {
        "C": C, "S": S, "distinct": np.mean([len(set(r[1].tolist())) for r in rows]),
        "fast_med": float(np.median(fast_times)), "fast_max": max(fast_times),
        "ref": ref_total, "ref_full": ref == "full", "ref_classes": classes.size,
        "identical": found == {c for c in result.labels if c in set(classes.tolist())},
        "exact": sum(r[2].labels == frozenset(r[1].tolist()) for r in rows),
        "lp_classes": sum(r[2].lp_classes for r in rows), "fallback": sum(r[2].fallback for r in rows),
        "updates": args.updates,
    }


def print_table(results: list[dict], args) -> None:
    print(f"\nd={args.d} act={args.act} seed={args.seed} cpus={os.cpu_count()} "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}")
    head = f"{'C':>6} {'S':>4} {'distinct':>8} {'fast med s':>10} {'fast max s':>10} {'ref s':>9} {'ratio':>7} " \
           f"{'same set':>8} {'exact':>6} {'LP cls':>6} {'fallbk':>6}"
    print(head)
    print("-" * len(head))
    for r in results:
        mark = " " if r["ref_full"] else "~"
        print(f"{r['C']:>6} {r['S']:>4} {r['distinct']:>8.1f} {r['fast_med']:>10.3f} {r['fast_max']:>10.3f} "
              f"{mark}{r['ref']:>8.1f} {r['ref'] / r['fast_med']:>6.0f}x {str(r['identical']):>8} "
              f"{r['exact']:>3}/{r['updates']:<2} {r['lp_classes']:>6} {r['fallback']:>6}")
    if not all(r["ref_full"] for r in results):
        print("~ reference timed on a subset of classes of the first update and extrapolated to all C;")
        print("  'same set' then compares fast and reference on that subset only.")
    print("ratio = reference / fast median; exact = updates whose predicted set equals the true label set;")
    print("LP cls = classes decided by an LP in the fast method (all updates); fallbk = updates without certificate.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", help="C:S[:full|N] (repeatable); default: %(default)s")
    parser.add_argument("--d", type=int, default=2048, help="feature dimension (1280 EfficientNet-B0, 2048 ResNet50)")
    parser.add_argument("--act", choices=["swish", "relu"], default="swish")
    parser.add_argument("--updates", type=int, default=3, help="updates per configuration timed with the fast method")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    results = []
    for spec in args.config or DEFAULT_CONFIGS:
        results.append(run_config(spec, args, rng))
        print(f"done {spec}: fast {results[-1]['fast_med']:.3f} s, reference {results[-1]['ref']:.1f} s", flush=True)
    print_table(results, args)
    return 0 if all(r["identical"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
