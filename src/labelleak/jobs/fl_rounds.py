"""Study ``fl_rounds``: every client update of a few Flower FedAvg rounds, as update files and truth files.

The clients train a small model with Flower (:func:`labelleak.federated.flower_train`); the server keeps the
global weights it sent and the weights each client returned, and each pair becomes an update file through
the same path as ``labelleak update`` (:func:`labelleak.federated.write_client_update`: dW = (W0 - WK)/lr,
the labels to a separate truth file). Round r's updates are the stage ``round<r>`` of the setting
``<dataset>/<model>/round<r>/fl_N<n>_K<k>``, one file per client: the training stage emerges from the rounds,
and K = 1 (FedSGD) vs K > 1 local steps (FedAvg) is the setting's K.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence

import numpy as np

log = logging.getLogger("labelleak")



def client_ids(clients: int) -> list[str]:
    return [f"{c:03d}" for c in range(int(clients))]


def dump_fl_rounds(cfg: dict, dataset_name: str, model_name: str, k: int, updates: Sequence[str | os.PathLike],
                   truths: Sequence[str | os.PathLike]) -> None:
    """Run the study's Flower FedAvg with ``k`` local steps; write every client's update of every round.

    ``updates`` / ``truths`` are ordered round-major (round 1's clients first), as the rule expands them.
    """
    import torch

    from labelleak.federated import flower_train, write_client_update
    from labelleak.jobs.context import dataset, derived_seed
    from labelleak.models import build_model
    from labelleak.models.registry import projection_layer

    s = cfg["fl_rounds"]
    rounds, clients, n, lr = int(s["rounds"]), int(s["clients"]), int(s["batch_size"]), float(s["lr"])
    if len(updates) != rounds * clients or len(truths) != len(updates):
        raise ValueError(f"{len(updates)} update and {len(truths)} truth files for {rounds} rounds x {clients} clients")
    torch.set_num_threads(1)  # a small model: one thread, whatever the job was given (the numbers must not care)
    train, test = dataset(cfg, dataset_name, "train"), dataset(cfg, dataset_name, "eval")
    items = min(len(train), int(s.get("train_items", len(train))))
    x, y = train.images(np.arange(items)), torch.as_tensor(np.array(train.labels[:items]))
    x_test, y_test = test.images(np.arange(min(len(test), 500))), torch.as_tensor(np.array(test.labels[:500]))
    spec = cfg["models"][model_name]
    options = {key: v for key, v in spec.items() if key not in ("arch", "weights")}

    def model_fn():
        return build_model(spec["arch"], num_classes=train.num_classes, **options)

    probe = model_fn()
    head = projection_layer(probe)
    layer = next(name for name, module in probe.named_modules() if module is head)
    written = 0

    def on_client_update(rnd, client, before, after, labels, num_samples, local_steps):
        nonlocal written
        i = (rnd - 1) * clients + int(client)
        meta = {"dataset": dataset_name, "model": model_name, "stage": f"round{rnd}", "local_lr": lr}
        write_client_update(updates[i], truths[i], before, after, layer, lr, n, local_steps, labels,
                            train.num_classes, meta)
        written += 1

    start = time.perf_counter()
    res = flower_train(model_fn, x, y, x_test, y_test, clients=clients, rounds=rounds, local_steps=int(k),
                       batch_size=n, lr=lr, seed=derived_seed(cfg, "fl_rounds", dataset_name, model_name, k),
                       eval_every=rounds, on_client_update=on_client_update)
    if written != len(updates):
        raise RuntimeError(f"Flower reported {written} client updates, {len(updates)} expected")
    log.info("fl_rounds K=%d: %d client updates of %d rounds in %.1fs; test accuracy %.3f", k, written, rounds,
             time.perf_counter() - start, res.accuracy)
