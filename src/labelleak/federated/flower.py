"""Federated training through Flower: real ``NumPyClient`` clients and Flower's own FedAvg strategy, in process.

The engine is Flower's server-side API driven round by round in this process (no network, no Ray):

* every client is a :class:`TorchClient`, a ``flwr.client.NumPyClient`` whose NDArrays are the model's
  ``state_dict`` entries in key order (``client.names``). It is wrapped by ``client.to_client()`` and an
  in-process ``ClientProxy`` (:class:`InProcessProxy`), so the server speaks Flower's ``FitIns`` /
  ``FitRes`` with ``Parameters`` serialised by ``ndarrays_to_parameters``, as over the wire;
* the server is ``flwr.server.strategy.FedAvg`` (``FedAvgM`` with momentum 0 when the server step differs
  from the clients' lr, e.g. Sign-SGD: its ``server_learning_rate`` scales the averaged step) with a
  ``SimpleClientManager``: ``configure_fit`` -> each proxy's ``fit`` -> ``aggregate_fit`` every round;
  ``strategy.evaluate`` (an ``evaluate_fn`` on the test set) gives the accuracy history.

Flower's simulation engine (``flwr.simulation``) needs Ray (``flwr[simulation]``); without it, it
cannot run at all, and it would start worker processes. The in-process driver runs the same client and
strategy code and is deterministic.

Defenses act **in the client**, as a client would apply them before sending: the client trains
``local_steps`` plain SGD steps from the global weights W0 to W1, computes its update
u = (W0 - W1) / lr per trainable tensor, passes it through the update-stage defense
(:func:`labelleak.defenses.apply`, one seeded generator per client, every tensor = one layer's weight
or bias) and returns W0 - lr * defense(u). Buffers (BatchNorm statistics) are
returned as trained, undefended. DP-SGD (``dpsgd-CLIP-SIGMA``, a compute-stage defense) trains through
Opacus (``PrivacyEngine.make_private``: per-sample clipping to ``max_grad_norm = CLIP``, Gaussian noise
``noise_multiplier = SIGMA``, Poisson sampling at rate batch_size / shard size); epsilon is Opacus' RDP
accountant's, per client, at ``delta`` (the largest over the clients is reported).

Sign convention and scale: what a client returns, read by :func:`labelleak.updates.from_weights.
update_from_weights` with the client's ``lr``, is the defended update itself (the update file's
convention: one undefended step is the gradient of the batch's mean loss). :func:`write_client_update`
writes it as an update file and its labels as a separate truth file (never in the update file); pass
``on_client_update`` to :func:`flower_train` to see every client's weights of every round.

Determinism: one seed gives identical weights (per-client numpy / torch generators; the sampled client
order is sorted by client id before aggregation; ``torch.use_deterministic_algorithms`` while training).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from labelleak.defenses import apply, compute_step
from labelleak.federated.common import FedResult, split_clients, test_accuracy

#: ``on_client_update(round, client_id, before, after, labels, num_samples, local_steps)``
ClientUpdateHook = Callable[[int, int, dict, dict, np.ndarray, int, int], None]


def _flwr():
    """The Flower pieces used here (imported lazily: flwr is an optional dependency)."""
    try:
        from flwr.client import NumPyClient
    except ImportError:
        from labelleak.errors import LabelleakError

        raise LabelleakError("the Flower engine needs flwr: pip install -e '.[federated]'") from None
    return NumPyClient


class _Local:
    """What one client keeps between rounds: model, data, generators, Opacus engine (DP-SGD)."""

    def __init__(self, cid: int, model_fn: Callable[[], nn.Module], x: torch.Tensor, y: torch.Tensor, *,
                 defense: str, lr: float, local_steps: int, batch_size: int, seed: int):
        self.cid, self.x, self.y = cid, x, y
        self.defense, self.lr, self.local_steps = defense, float(lr), int(local_steps)
        self.batch_size = min(int(batch_size), len(y))
        seeds = np.random.SeedSequence([int(seed), int(cid)]).generate_state(3)
        self.rng = np.random.default_rng(int(seeds[0]))  # batches and the update-stage defense
        torch.manual_seed(int(seeds[1]))  # only in case model_fn draws; its weights are overwritten by fit
        self.net = model_fn()
        self.names = list(self.net.state_dict())
        self.trainable = [n for n, p in self.net.named_parameters() if p.requires_grad]
        self.dp = compute_step(defense)
        self.engine = None
        if self.dp is not None:
            self._make_private(int(seeds[2]))
        else:
            self.opt = torch.optim.SGD([p for p in self.net.parameters() if p.requires_grad], lr=self.lr)
        self.last_labels = np.zeros(0, dtype=np.int64)

    def _make_private(self, seed: int) -> None:
        from opacus import PrivacyEngine
        from torch.utils.data import DataLoader, TensorDataset

        clip, sigma = self.dp.values
        g_sample, g_noise = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
        loader = DataLoader(TensorDataset(self.x, self.y), batch_size=self.batch_size, shuffle=False,
                            generator=g_sample)
        opt = torch.optim.SGD([p for p in self.net.parameters() if p.requires_grad], lr=self.lr)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "secure RNG turned off": seeded generators on purpose
            self.engine = PrivacyEngine(accountant="rdp")
            self.module, self.opt, self.loader = self.engine.make_private(
                module=self.net, optimizer=opt, data_loader=loader, noise_multiplier=float(sigma),
                max_grad_norm=float(clip), poisson_sampling=True, noise_generator=g_noise)

    # ------------------------------------------------------------------ NDArrays by state_dict key
    def get(self) -> list[np.ndarray]:
        return [v.detach().cpu().numpy().copy() for v in self.net.state_dict().values()]

    def set(self, arrays) -> None:
        if len(arrays) != len(self.names):
            raise ValueError(f"client {self.cid}: got {len(arrays)} arrays for {len(self.names)} state_dict entries")
        state = self.net.state_dict()
        self.net.load_state_dict({k: torch.from_numpy(np.array(v)).to(state[k].dtype)
                                  for k, v in zip(self.names, arrays)})

    # ------------------------------------------------------------------ training
    def _batches(self):
        if self.engine is not None:  # Opacus' Poisson sampler, seeded
            it = iter(self.loader)
            for _ in range(self.local_steps):
                try:
                    yield next(it)
                except StopIteration:
                    it = iter(self.loader)
                    yield next(it)
            return
        for _ in range(self.local_steps):
            idx = torch.as_tensor(self.rng.choice(len(self.y), size=self.batch_size, replace=False))
            yield self.x[idx], self.y[idx]

    def fit(self, arrays) -> tuple[list[np.ndarray], float]:
        self.set(arrays)
        before = {k: np.asarray(v) for k, v in zip(self.names, arrays)}
        self.net.train()
        labels, losses = [], []
        model = self.module if self.engine is not None else self.net
        for xb, yb in self._batches():
            labels.append(yb.numpy().astype(np.int64))
            self.opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xb), yb) if len(yb) else model(xb).sum() * 0.0
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Full backward hook")  # Opacus' hooks, inputs need no grad
                loss.backward()
            self.opt.step()
            losses.append(float(loss.detach()))
        self.last_labels = np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)
        after = dict(zip(self.names, self.get()))
        # the client's update per trainable tensor, defended here (the client's side), then sent as weights
        update = [(before[n].astype(np.float64) - after[n].astype(np.float64)) / self.lr for n in self.trainable]
        defended = apply(self.defense, update, self.rng)
        for n, d in zip(self.trainable, defended):
            after[n] = (before[n].astype(np.float64) - self.lr * np.asarray(d, dtype=np.float64)).astype(
                before[n].dtype)
        return [after[n] for n in self.names], float(np.mean(losses)) if losses else float("nan")

    def evaluate(self, arrays) -> tuple[float, float]:
        self.set(arrays)
        self.net.eval()
        with torch.no_grad():
            out = self.net(self.x)
            return float(F.cross_entropy(out, self.y)), float((out.argmax(1) == self.y).float().mean())

    def epsilon(self, delta: float) -> float | None:
        if self.engine is None:
            return None
        if self.dp.values[1] <= 0:
            return float("inf")
        return float(self.engine.accountant.get_epsilon(delta=float(delta)))


def make_client(cid: int, model_fn: Callable[[], nn.Module], x: torch.Tensor, y: torch.Tensor, *,
                defense: str = "none", lr: float = 0.1, local_steps: int = 1, batch_size: int = 32,
                seed: int = 0):
    """A Flower ``NumPyClient`` over (x, y): ``fit`` = ``local_steps`` SGD steps + the defense, in the client.

    NDArrays are the model's state_dict entries in key order (``client.names``); ``fit`` returns
    (weights, len(y), {"loss", "client_id"}) and keeps the labels it used in ``client.last_labels``.
    """
    NumPyClient = _flwr()

    class TorchClient(NumPyClient):
        def __init__(self):
            self.local = _Local(cid, model_fn, x, y, defense=defense, lr=lr, local_steps=local_steps,
                                batch_size=batch_size, seed=seed)
            self.cid, self.names = cid, self.local.names

        @property
        def last_labels(self) -> np.ndarray:
            return self.local.last_labels

        def get_parameters(self, config):
            return self.local.get()

        def fit(self, parameters, config):
            weights, loss = self.local.fit(parameters)
            return weights, len(self.local.y), {"loss": loss, "client_id": self.cid}

        def evaluate(self, parameters, config):
            loss, acc = self.local.evaluate(parameters)
            return loss, len(self.local.y), {"accuracy": acc}

        def epsilon(self, delta: float) -> float | None:
            return self.local.epsilon(delta)

    return TorchClient()


def _proxy_class():
    from flwr.common import DisconnectRes
    from flwr.server.client_proxy import ClientProxy

    class InProcessProxy(ClientProxy):
        """A ``ClientProxy`` that calls a Flower ``Client`` in this process (what gRPC/Ray would carry)."""

        def __init__(self, cid: str, client):
            super().__init__(cid)
            self.client = client  # flwr.client.Client (from NumPyClient.to_client())

        def get_properties(self, ins, timeout, group_id):
            return self.client.get_properties(ins)

        def get_parameters(self, ins, timeout, group_id):
            return self.client.get_parameters(ins)

        def fit(self, ins, timeout, group_id):
            return self.client.fit(ins)

        def evaluate(self, ins, timeout, group_id):
            return self.client.evaluate(ins)

        def reconnect(self, ins, timeout, group_id):
            return DisconnectRes(reason="in-process")

    return InProcessProxy


@contextmanager
def _deterministic(on: bool):
    before = torch.are_deterministic_algorithms_enabled()
    if on:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def _weighted_metrics(metrics: list[tuple[int, dict]]) -> dict:
    total = sum(n for n, _ in metrics) or 1
    return {"loss": float(sum(n * float(m.get("loss", 0.0)) for n, m in metrics) / total)}


def make_strategy(initial: list[np.ndarray], *, clients: int, lr: float, server_lr: float | None = None,
                  evaluate_fn=None):
    """Flower's FedAvg over all ``clients`` every round; FedAvgM (momentum 0) when server_lr != lr.

    FedAvg: w <- sum_i n_i w_i / sum_i n_i. With the clients' w_i = w - lr * u_i, FedAvgM's
    ``server_learning_rate = server_lr / lr`` gives w <- w - server_lr * (weighted mean of u_i).
    """
    from flwr.common import ndarrays_to_parameters
    from flwr.server.strategy import FedAvg, FedAvgM

    common = {"fraction_fit": 1.0, "fraction_evaluate": 0.0, "min_fit_clients": clients, "min_evaluate_clients": 0,
              "min_available_clients": clients, "initial_parameters": ndarrays_to_parameters(initial),
              "evaluate_fn": evaluate_fn, "fit_metrics_aggregation_fn": _weighted_metrics}
    if server_lr is None or float(server_lr) == float(lr):
        return FedAvg(inplace=False, **common)  # inplace=True would cast the weights to integer buffers' dtype
    return FedAvgM(server_learning_rate=float(server_lr) / float(lr), server_momentum=0.0, **common)


def flower_train(model_fn: Callable[[], nn.Module], x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor,
                 y_test: torch.Tensor, *, defense: str = "none", clients: int = 4, rounds: int = 10,
                 local_steps: int = 1, batch_size: int = 32, lr: float = 0.05, server_lr: float | None = None,
                 delta: float = 1e-5, seed: int = 0, eval_every: int | None = None,
                 on_client_update: ClientUpdateHook | None = None, deterministic: bool = True,
                 return_weights: bool = False):
    """Train ``model_fn()`` federatedly through Flower; the same arguments and :class:`FedResult` as
    :func:`labelleak.federated.federated_train`.

    Clients hold IID shards (:func:`split_clients` with the seed's generator, as the simulator). Every
    round: ``strategy.configure_fit`` over all clients, each client's ``fit`` (through ``to_client()``
    and Flower's FitIns/FitRes), ``strategy.aggregate_fit``. ``eval_every``: record the test accuracy
    every that many rounds (``strategy.evaluate``), always at the end. ``on_client_update(round,
    client_id, before, after, labels, num_samples, local_steps)`` is called for every client of every
    round with the global weights sent and the (defended) weights returned, both ``{state_dict key:
    ndarray}``, and the labels the client trained on (truth: for scoring only). With
    ``return_weights`` the result is ``(FedResult, final weights dict)``.
    """
    from flwr.common import parameters_to_ndarrays
    from flwr.server.client_manager import SimpleClientManager

    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    torch.manual_seed(int(rng.integers(2**31)))
    model = model_fn()
    shards = split_clients(len(y), clients, rng)
    client_seed = int(rng.integers(2**31))
    names = list(model.state_dict())
    Proxy = _proxy_class()
    with _deterministic(deterministic):
        numpy_clients = [make_client(i, model_fn, x[s], y[s], defense=defense, lr=lr, local_steps=local_steps,
                                     batch_size=batch_size, seed=client_seed) for i, s in enumerate(shards)]
        manager = SimpleClientManager()
        proxies = {}
        for i, c in enumerate(numpy_clients):
            proxies[str(i)] = Proxy(str(i), c.to_client())
            manager.register(proxies[str(i)])

        def evaluate_fn(rnd, arrays, config):
            model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in zip(names, arrays)})
            acc = test_accuracy(model, x_test, y_test)
            return float("nan"), {"accuracy": float(acc.mean())}

        initial = [v.detach().cpu().numpy().copy() for v in model.state_dict().values()]
        strategy = make_strategy(initial, clients=clients, lr=lr, server_lr=server_lr, evaluate_fn=evaluate_fn)
        parameters = strategy.initialize_parameters(manager)
        history = []
        for rnd in range(1, rounds + 1):
            instructions = sorted(strategy.configure_fit(rnd, parameters, manager), key=lambda t: int(t[0].cid))
            sent = parameters_to_ndarrays(parameters)
            results = []
            for proxy, ins in instructions:
                res = proxy.fit(ins, timeout=None, group_id=rnd)
                results.append((proxy, res))
                if on_client_update is not None:
                    cid = int(proxy.cid)
                    on_client_update(rnd, cid, dict(zip(names, sent)),
                                     dict(zip(names, parameters_to_ndarrays(res.parameters))),
                                     numpy_clients[cid].last_labels.copy(), int(res.num_examples), local_steps)
            new, _ = strategy.aggregate_fit(rnd, results, [])
            if new is None:
                raise RuntimeError(f"round {rnd}: Flower's aggregate_fit returned no parameters")
            parameters = new
            if eval_every and rnd % eval_every == 0 and rnd < rounds:
                history.append(float(strategy.evaluate(rnd, parameters)[1]["accuracy"]))
        final = parameters_to_ndarrays(parameters)
        model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in zip(names, final)})
        correct = test_accuracy(model, x_test, y_test)
    history.append(float(correct.mean()))
    eps = [c.epsilon(delta) for c in numpy_clients]
    eps = None if eps[0] is None else max(eps)
    result = FedResult(float(correct.mean()), correct, eps, time.perf_counter() - start, history)
    return (result, dict(zip(names, final))) if return_weights else result


def write_client_update(path: str | os.PathLike, truth_path: str | os.PathLike, before: Mapping[str, np.ndarray],
                        after: Mapping[str, np.ndarray], layer: str, lr: float | None, batch_size: int | None,
                        steps: int | None, labels, num_classes: int | None = None,
                        meta: Mapping[str, Any] | None = None) -> None:
    """One client's returned weights as an update file (``update_from_weights`` -> ``save_update``) and its
    labels as a truth file (``save_truth``); the update file never holds labels.

    ``meta`` is added to the update's provenance (an attack sees only :data:`ATTACKER_META` keys) and
    to the truth file's; it must not carry labels.
    """
    from labelleak.errors import LabelleakError
    from labelleak.updates.format import save_truth, save_update
    from labelleak.updates.from_weights import update_from_weights

    meta = dict(meta or {})
    if "labels" in meta:
        raise LabelleakError("write_client_update: labels go to the truth file, not into the update's meta")
    obs = update_from_weights(before, after, layer, lr=lr, batch_size=batch_size, steps=steps)
    full = {**obs.meta, **meta}
    C = obs.num_classes if num_classes is None else int(num_classes)
    if C != obs.num_classes:
        raise LabelleakError(f"write_client_update: num_classes {C} but layer {layer!r} has {obs.num_classes}")
    save_update(path, obs.dW, db=obs.db, W=obs.W, b=obs.b, batch_size=obs.batch_size, steps=obs.steps, meta=full)
    save_truth(truth_path, labels, C, update=os.path.basename(os.fspath(path)), **full)
