"""Benchmark: RLG on the regimes of updates made elsewhere (issue targets), measured in one run.

1. A trained 1000-class head, N = 100, float64 file (H^T G / N in numpy): fast RLG against the
   per-class LP (every class), same set required; the ratio reference / fast.
2. A 16k-class update (16328 classes, d = 192, N = 12, float64): the whole ``labelleak reveal``
   process (interpreter start, imports, file read, SVD, search, certificates), wall time.
3. Sign-SGD and GradDrop 50% / 90% updates of a trained 1000-class head (d = 1280, N = 10) and a
   GradDrop-90% 16k-class update, with S given (N) and S at the spectrum's gap: wall time each,
   and whether the answer is a set or an explicit n/a; and GradDrop 50/90% of a 4-token update of an
   untrained 16k-class head (the default config's ASR updates).

    python benchmarks/bench_rlg_regimes.py            # about 3 minutes on 2 cores

Certificates are verified for every set. Exit status 1 if a set differs from the reference or a
certificate fails. Updates come from ``tests/rlg_cases.py`` (linear-softmax heads; trained = peaked).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # see bench_rlg.py

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from rlg_cases import gradient, head  # noqa: E402

from labelleak.attacks.rlg import reveal_labels, reveal_labels_reference, verify  # noqa: E402
from labelleak.defenses import apply  # noqa: E402
from labelleak.errors import NotApplicable  # noqa: E402
from labelleak.updates.format import save_update  # noqa: E402


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def defended_case(name: str, D: np.ndarray, y: np.ndarray) -> bool:
    """RLG on a defended update with S given (the true count) and at the gap: time, set or n/a, one line each;
    False if a certificate fails."""
    ok = True
    for S in (len(y), None):
        start = time.perf_counter()
        try:
            res, t = timed(lambda S=S: reveal_labels(D, S))
            good = verify(D, res.certificates).ok
            ok &= good
            hit = len(res.labels & set(y.tolist()))
            what = (f"set of {len(res.labels)} (P {hit / max(1, len(res.labels)):.2f}, R {hit / len(y):.2f}), "
                    f"certificates {'verify' if good else 'FAIL'}")
        except NotApplicable as exc:
            t = time.perf_counter() - start
            what = f"n/a: {str(exc)[:70]}"
        print(f"    {name} S={'given' if S else 'gap':>5}: {t:6.2f} s  {what}")
    return ok


def main() -> int:
    rng = np.random.default_rng(0)
    ok = True
    print(f"cpus={os.cpu_count()} OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}")
    # 1. trained head, N = 100, float64
    y = rng.choice(1000, 100, replace=False)
    dW = gradient(*head(rng, y, 1280, 1000, "swish", True), y)
    fast, t_fast = timed(lambda: reveal_labels(dW))
    (ref, _), t_ref = timed(lambda: reveal_labels_reference(dW))
    same = set(fast.labels) == ref
    ok &= same and verify(dW, fast.certificates).ok
    print(f"[1] trained 1000-class head, N=100, float64: fast {t_fast:.2f} s, per-class LP {t_ref:.1f} s, "
          f"ratio {t_ref / t_fast:.0f}x (target >= 60x), same set {same}, exact {fast.labels == frozenset(y.tolist())}")
    # 2. 16k classes, whole CLI process
    y = rng.choice(16328, 12, replace=False)
    dW16 = gradient(*head(rng, y, 192, 16328, "swish", True), y)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "u16k.npz"
        save_update(path, dW16)
        cmd = [sys.executable, "-m", "labelleak.cli", "reveal", "--method", "rlg", str(path)]
        proc, t_cli = timed(lambda: subprocess.run(cmd, capture_output=True, text=True))
    answer = json.loads(proc.stdout) if proc.returncode == 0 else {}
    exact = answer.get("labels") == sorted(y.tolist())
    ok &= exact
    print(f"[2] 16328 classes, d=192, N=12: whole `labelleak reveal` process {t_cli:.2f} s (target <= 2 s), exact {exact}")
    # 3. defended updates, S given and S at the gap
    print("[3] defended updates (target <= 10 s each, a set or an explicit n/a):")
    for C, d in ((1000, 1280), (16328, 192)):
        y = rng.choice(C, 10, replace=False)
        dW = gradient(*head(rng, y, d, C, "swish", True), y).astype(np.float32)
        for defense in (["signsgd", "graddrop-0.5", "graddrop-0.9"] if C == 1000 else ["graddrop-0.9"]):
            ok &= defended_case(f"C={C:>5} {defense:>12}", apply(defense, [dW], np.random.default_rng(0))[0], y)
    # the default config's ASR update: one short utterance (4 tokens) of an untrained 16k-class head, where
    # GradDrop raises rank(dW) to about 35 and hundreds of columns become separable (n/a at S from the gap)
    y = rng.choice(16328, 4, replace=False)
    dW = gradient(*head(rng, y, 192, 16328, "relu", False), y).astype(np.float32)
    for defense in ("graddrop-0.5", "graddrop-0.9"):
        ok &= defended_case(f"C=16328 4 tokens {defense:>12}", apply(defense, [dW], np.random.default_rng(0))[0], y)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
