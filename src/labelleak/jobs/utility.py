"""Stage "utility": the accuracy a defense costs, by Flower federated training with the defense in
every client.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from labelleak.io import write_json
from labelleak.jobs.context import dataset, derived_seed

log = logging.getLogger("labelleak")


def utility(cfg: dict, algorithm: str, defense: str, out: str | os.PathLike) -> None:
    """Test accuracy of a small model trained with Flower's FedAvg, every client's update passed through ``defense``."""
    import torch

    from labelleak.defenses import parse
    from labelleak.federated import flower_train
    from labelleak.metrics.bootstrap import mean_ci
    from labelleak.models import build_model

    torch.set_num_threads(1)  # a LeNet-sized model: one thread is fastest, and the jobs run side by side
    u = cfg["utility"]
    train, test = dataset(cfg, u["dataset"], "train"), dataset(cfg, u["dataset"], "eval")
    n_train = min(len(train), u.get("train_items", len(train)))
    x = train.images(np.arange(n_train))
    y = torch.as_tensor(np.array(train.labels[:n_train]))
    x_test, y_test = test.images(np.arange(len(test))), torch.as_tensor(test.labels)
    spec = cfg["models"][u["model"]]
    options = {k: v for k, v in spec.items() if k not in ("arch", "weights")}
    model_fn = lambda: build_model(spec["arch"], num_classes=train.num_classes, **options)  # noqa: E731
    families = [s.family.name for s in parse(defense)]
    server_lr = next((u.get("server_lr", {})[f] for f in families if f in u.get("server_lr", {})), None)
    local_steps, rounds = u["local_steps"][algorithm], u["rounds"][algorithm]
    res = flower_train(model_fn, x, y, x_test, y_test, defense=defense, clients=u["clients"],
                          rounds=rounds, local_steps=local_steps, batch_size=u["batch_size"], lr=u["lr"],
                          server_lr=server_lr, delta=cfg.get("defenses", {}).get("delta", 1e-5),
                          seed=derived_seed(cfg, "utility", algorithm, defense))
    mean, lo, hi = mean_ci(res.correct, seed=cfg["seed"])
    write_json(out, {"algorithm": algorithm, "defense": defense, "accuracy": mean, "ci_low": lo, "ci_high": hi,
                     "n_test": int(res.correct.size), "epsilon": res.epsilon, "seconds": res.seconds,
                     "history": res.history, "clients": u["clients"], "rounds": rounds,
                     "local_steps": local_steps, "server_lr": server_lr if server_lr is not None else u["lr"],
                     "model": u["model"], "dataset": u["dataset"]})
    log.info("utility %s %s: accuracy %.3f in %.1fs (epsilon %s)", algorithm, defense, mean, res.seconds, res.epsilon)
