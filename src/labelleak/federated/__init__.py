"""Federated training through Flower, to measure what a defense costs in accuracy and to make client updates.

:func:`flower_train`: Flower's NumPyClient clients and FedAvg strategy, in process (no network, no Ray);
every client's returned weights can be written as update files (:func:`write_client_update`).
"""

from labelleak.federated.common import FedResult, split_clients
from labelleak.federated.flower import flower_train, make_client, make_strategy, write_client_update

__all__ = ["FedResult", "flower_train", "make_client", "make_strategy", "split_clients", "write_client_update"]
