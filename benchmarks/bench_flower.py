"""Utility study through the Flower engine: test accuracy per defense on a generated task (CPU, 1 thread).

Sizes a ``utility:`` config block: the undefended baseline should sit clearly below 1 and be flat
over the last rounds, and each defense's cost should show. One JSON line per (algorithm, defense)::

    python benchmarks/bench_flower.py --classes 100 --noise 0.5 --train-items 2000 \\
        --rounds-fedsgd 100 --rounds-fedavg 20 --defenses none signsgd
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from labelleak.data import build_dataset
from labelleak.defenses import parse
from labelleak.federated import flower_train
from labelleak.models import build_model

DEFENSES = ["none", "signsgd", "graddrop-0.5", "graddrop-0.9", "topk-0.01", "qsgd-4", "clip-0.1", "noise-0.0001",
            "noise-0.001", "dpsgd-1.0-0.01", "dpsgd-1.0-1.0"]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--noise", type=float, default=0.5)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--train-items", type=int, default=2000)
    ap.add_argument("--eval-items", type=int, default=2000)
    ap.add_argument("--model", default="lenet5")
    ap.add_argument("--activation", default="relu")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--rounds-fedsgd", type=int, default=100)
    ap.add_argument("--rounds-fedavg", type=int, default=20)
    ap.add_argument("--steps-fedavg", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--signsgd-server-lr", type=float, default=0.001)
    ap.add_argument("--algorithms", nargs="+", default=["fedsgd", "fedavg"])
    ap.add_argument("--defenses", nargs="+", default=DEFENSES)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    t0 = time.perf_counter()
    spec = {"kind": "synthetic_images", "num_classes": args.classes, "image_size": args.image_size,
            "noise": args.noise, "train_size": args.train_items, "eval_size": args.eval_items}
    train, test = build_dataset(spec, "train", seed=0), build_dataset(spec, "eval", seed=0)
    x, y = train.images(np.arange(len(train))), torch.as_tensor(np.array(train.labels))
    xt, yt = test.images(np.arange(len(test))), torch.as_tensor(np.array(test.labels))
    print(json.dumps({"data_seconds": round(time.perf_counter() - t0, 2)}), flush=True)
    opts = {"activation": args.activation} if args.model != "fcn3" else {"in_features": 3 * args.image_size ** 2}
    model_fn = lambda: build_model(args.model, num_classes=args.classes, **opts)
    total, cpu_total = 0.0, time.process_time()
    for algorithm in args.algorithms:
        steps = 1 if algorithm == "fedsgd" else args.steps_fedavg
        rounds = args.rounds_fedsgd if algorithm == "fedsgd" else args.rounds_fedavg
        for defense in args.defenses:
            server_lr = args.signsgd_server_lr if "signsgd" in [s.family.name for s in parse(defense)] else None
            cpu = time.process_time()
            res = flower_train(model_fn, x, y, xt, yt, defense=defense, clients=args.clients, rounds=rounds,
                           local_steps=steps, batch_size=args.batch_size, lr=args.lr, server_lr=server_lr,
                           seed=args.seed, eval_every=max(1, rounds // 10))
            total += res.seconds
            print(json.dumps({"algorithm": algorithm, "defense": defense, "accuracy": round(res.accuracy, 4),
                              "epsilon": None if res.epsilon is None else round(res.epsilon, 3),
                              "seconds": round(res.seconds, 2), "cpu_seconds": round(time.process_time() - cpu, 2),
                              "history": [round(h, 3) for h in res.history]}),
                  flush=True)
    print(json.dumps({"train_seconds_total": round(total, 1), "cpu_seconds_total": round(time.process_time() - cpu_total, 1),
                      "wall_seconds": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
