"""Keras as a second gradient source: the projection-layer update of a Keras application.

The paper's image models were ``keras.applications`` (ResNet50, EfficientNetB0); this computes their
update by ``tf.GradientTape`` and returns it in the update file's convention, so every attack reads
Keras and torch updates alike. TensorFlow is imported lazily, only here (extra ``keras``).

Orientation and sign: a Keras ``Dense`` kernel is already (d, C) (rows = input features, columns =
classes), the file's orientation, so dW is the kernel's gradient as is (torch's ``nn.Linear.weight``
is (C, d) and is transposed in :mod:`labelleak.updates.compute`). A one-step update is the gradient
of the mean cross-entropy; K steps of SGD from W0 to WK give (W0 - WK) / lr, as for torch.
BatchNorm: ``bn_mode="eval"`` calls the model with ``training=False`` (frozen statistics, and no
dropout, like the torch models' defaults); ``"train"`` uses batch statistics.
Nothing is downloaded: ``weights=None`` is a seeded random init, or a weights file by path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from labelleak.errors import LabelleakError
from labelleak.updates.compute import ProjectionUpdate

#: our architecture names -> keras.applications constructors
KERAS_ARCHITECTURES = {"resnet50": "ResNet50", "efficientnet_b0": "EfficientNetB0"}


def import_tf():
    """TensorFlow, quietly; a one-line error when it is not installed."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError:
        raise LabelleakError("framework 'keras' needs tensorflow: pip install -e '.[keras]'") from None
    threads = int(os.environ.get("OMP_NUM_THREADS", "0"))  # the job's threads (pipeline.run_job); 0: TF's own
    if threads and tf.config.threading.get_intra_op_parallelism_threads() != threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # TF's runtime already started: its threads are fixed by then
            pass
    return tf


def build_keras_model(arch: str, num_classes: int, image_size: int, *, seed: int = 0,
                      weights: str | os.PathLike | None = None):
    """A keras.applications model with a ``num_classes`` logits head (no softmax), channels last."""
    tf = import_tf()
    if arch not in KERAS_ARCHITECTURES:
        raise LabelleakError(f"no Keras architecture {arch!r}; known: {', '.join(sorted(KERAS_ARCHITECTURES))}")
    tf.keras.utils.set_random_seed(seed)
    ctor = getattr(tf.keras.applications, KERAS_ARCHITECTURES[arch])
    model = ctor(weights=None, include_top=True, classes=num_classes, classifier_activation=None,
                 input_shape=(image_size, image_size, 3))
    if weights:
        if not Path(weights).is_file():
            raise LabelleakError(f"weights file not found: {weights}")
        model.load_weights(str(weights))
    return model


def projection_layer(model):
    """The last Dense layer (the projection layer the attacks read)."""
    tf = import_tf()
    dense = [layer for layer in model.layers if isinstance(layer, tf.keras.layers.Dense)]
    if not dense:
        raise LabelleakError(f"Keras model {model.name!r} has no Dense projection layer")
    return dense[-1]


def keras_projection_update(model, steps: Sequence[tuple[np.ndarray, np.ndarray]], *, lr: float = 0.1,
                            bn_mode: str = "eval") -> ProjectionUpdate:
    """The update of the model's last Dense layer after len(steps) local SGD steps (one: the gradient).

    ``steps``: (x, y) pairs, x float (N, H, W, C) channels last, y int (N,). The model is not modified.
    """
    tf = import_tf()
    if not steps:
        raise ValueError("keras_projection_update needs at least one step")
    head = projection_layer(model)
    W0 = np.array(head.kernel.numpy())
    b0 = np.array(head.bias.numpy())
    training = bn_mode == "train"
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)  # mean over the batch
    variables = model.trainable_variables
    saved = [v.numpy() for v in variables] if len(steps) > 1 else None
    try:
        for x, y in steps:
            with tf.GradientTape() as tape:
                loss = loss_fn(tf.convert_to_tensor(y), model(tf.convert_to_tensor(x), training=training))
            if len(steps) == 1:
                dW, db = tape.gradient(loss, [head.kernel, head.bias])
                dW, db = dW.numpy(), db.numpy()
                break
            grads = tape.gradient(loss, variables)
            for v, g in zip(variables, grads):
                if g is not None:
                    v.assign_sub(lr * g)
        else:
            dW = (W0 - head.kernel.numpy()) / lr
            db = (b0 - head.bias.numpy()) / lr
    finally:
        if saved is not None:
            for v, value in zip(variables, saved):
                v.assign(value)
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    return ProjectionUpdate(dW=f32(dW), db=f32(db), W=f32(W0), b=f32(b0))


def to_channels_last(images) -> np.ndarray:
    """A torch (N, C, H, W) batch from the datasets -> numpy (N, H, W, C) for Keras."""
    arr = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
    return np.ascontiguousarray(arr.transpose(0, 2, 3, 1), dtype=np.float32)


def keras_device() -> str:
    """Where TensorFlow runs (it takes a visible GPU by itself), for logs and result metadata."""
    tf = import_tf()
    gpus = tf.config.list_physical_devices("GPU")
    return f"gpu:{gpus[0].name}" if gpus else "cpu"


def save_keras_checkpoint(path: str | os.PathLike, model, **info) -> None:
    """Atomically save the model's weights (in ``get_weights`` order) and ``info`` as one .npz."""
    import json

    from labelleak.io import atomic_path

    arrays = {f"w{i:04d}": w for i, w in enumerate(model.get_weights())}
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, info=np.array(json.dumps(info, default=str)), **arrays)


def load_keras_checkpoint(path: str | os.PathLike, model) -> dict:
    """Load a checkpoint of :func:`save_keras_checkpoint` into ``model``; returns its info."""
    import json

    try:
        with np.load(path, allow_pickle=False) as f:
            weights = [f[k] for k in sorted(k for k in f.files if k.startswith("w"))]
            info = json.loads(str(f["info"]))
    except (OSError, ValueError, KeyError) as exc:
        raise LabelleakError(f"cannot read Keras checkpoint {path}: {str(exc).splitlines()[0]}") from None
    if len(weights) != len(model.get_weights()):
        raise LabelleakError(f"Keras checkpoint {path}: {len(weights)} arrays, model has {len(model.get_weights())}")
    model.set_weights(weights)
    return info


def train_keras(model, dataset, *, checkpoint_steps, on_checkpoint, batch_size: int, lr: float,
                momentum: float = 0.9, seed: int = 0, log_every: int = 10) -> None:
    """SGD (Nesterov momentum, warm-up then cosine decay, as the torch trainer) for max(checkpoint_steps)."""
    import logging
    import time

    from labelleak.models.train import batch_order, lr_factor

    tf = import_tf()
    log = logging.getLogger(__name__)
    steps = sorted(set(checkpoint_steps))
    total = steps[-1]
    rng = np.random.default_rng(seed)
    opt = tf.keras.optimizers.SGD(learning_rate=lr, momentum=momentum, nesterov=momentum > 0)
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step_fn(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    batches = batch_order(len(dataset), batch_size, rng)
    if 0 in steps:
        on_checkpoint(0, model)
    start = time.perf_counter()
    for step in range(1, total + 1):
        idx = next(batches)
        opt.learning_rate.assign(lr * lr_factor(step - 1, total))
        loss = step_fn(to_channels_last(dataset.images(idx)), dataset.labels[idx])
        if step % log_every == 0 or step == total:
            elapsed = time.perf_counter() - start
            log.info("step %d/%d  loss %.4f  %.1fs elapsed, ~%.0fs left", step, total, float(loss), elapsed,
                     elapsed / step * (total - step))
        if step in steps:
            on_checkpoint(step, model)
