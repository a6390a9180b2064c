"""Updates made the way users outside the pipeline make them (numpy float64, float32 weight
differences, momentum, trained heads, defended), for the RLG trust tests and the benchmark."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def head(rng: np.random.Generator, labels, d: int, C: int, act: str = "swish", trained: bool = True):
    """(H (N, d), W (d, C), b) of a linear-softmax head. Trained: W aligned with class prototypes and
    scaled so the median logit margin is 12 (softmax peaked like a trained classifier)."""
    P = rng.standard_normal((C, d))
    y = np.asarray(labels)
    Z = P[y] + 0.5 * rng.standard_normal((len(y), d)) if trained else rng.standard_normal((len(y), d))
    f = {"relu": lambda z: np.maximum(z, 0), "elu": lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
         "swish": lambda z: z / (1 + np.exp(-z))}[act]
    H = f(Z)
    if trained:
        W = f(P).T.copy()
        z = H @ W
        margin = np.median(z[np.arange(len(y)), y] - np.sort(z, 1)[:, -2])
        W *= 12.0 / max(margin, 1e-9)
    else:
        W = rng.normal(0, 0.02, (d, C))
    return H, W, np.zeros(C)


def gradient(H, W, b, labels, dtype=np.float64) -> np.ndarray:
    """H^T G / N computed in ``dtype`` (as a numpy or JAX user makes it)."""
    H, W, b = (np.asarray(a, dtype=dtype) for a in (H, W, b))
    z = H @ W + b
    P = np.exp(z - z.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    P[np.arange(len(labels)), labels] -= 1
    return H.T @ P / len(labels)


def weight_difference(H, W, b, labels, lr: float, dtype=np.float32) -> np.ndarray:
    """(W0 - W1)/lr with both weights stored in ``dtype``: what a federated server holds."""
    W0 = W.astype(dtype)
    W1 = (W0.astype(np.float64) - lr * gradient(H, W, b, labels)).astype(dtype)
    return ((W0.astype(np.float64) - W1.astype(np.float64)) / lr).astype(dtype)


def client_update(d: int, C: int, batches, seed: int = 0, lr: float = 0.05, momentum: float = 0.0,
                  act=nn.SiLU) -> np.ndarray:
    """A client's K local SGD steps of a whole float32 model; the server's (W0 - WK)/lr (d, C)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(32, d), act(), nn.Linear(d, C))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    w0 = model[2].weight.detach().clone()
    g = torch.Generator().manual_seed(seed + 1)
    for labels in batches:
        x = torch.randn(len(labels), 32, generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x), torch.as_tensor(labels)).backward()
        opt.step()
    return ((w0 - model[2].weight.detach()) / lr).T.numpy()
