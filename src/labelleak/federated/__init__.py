"""A small simulated federated training loop, to measure what a defense costs in accuracy."""

from labelleak.federated.simulate import FedResult, federated_train, split_clients

__all__ = ["FedResult", "federated_train", "split_clients"]
