"""``labelleak`` command line: one update at a time.

``labelleak reveal --method NAME UPDATE.npz`` prints one JSON object
``{"method": ..., "labels": [sorted class ids], "num_labels": <S estimate or null>}``
(count-capable attacks add ``"counts": {class: n}``) and exits 0. Bad input exits 2 with one line
on stderr; an attack whose assumptions do not hold for the update exits 3 with one line.
``labelleak update --before B --after A --layer NAME [--lr LR] -o UPDATE.npz`` builds an update file
from two sets of a model's weights (a federated client's, before and after local training).
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys

from labelleak.errors import LabelleakError, NotApplicable

EXIT_BAD_INPUT = 2
EXIT_NOT_APPLICABLE = 3


def _parser() -> argparse.ArgumentParser:
    from labelleak.attacks import registry

    parser = argparse.ArgumentParser(prog="labelleak", description="Label leakage from gradients.")
    sub = parser.add_subparsers(dest="command", required=True)
    reveal = sub.add_parser("reveal", help="reveal the labels behind one update file")
    reveal.add_argument("--method", required=True, choices=sorted(registry()))
    reveal.add_argument("--num-labels", type=int, default=None, metavar="S",
                        help="number of label positions S, when known (RLG: skips the rank estimate)")
    reveal.add_argument("--checkpoint", default=None, metavar="PATH",
                        help="model checkpoint at the update's stage, for attacks that need the model "
                             "(llg_plus, llg_star, geng, dlg; gm_asr, gm_bow: the ASR checkpoint, and the "
                             "update's sibling UPDATE.decoder.npz)")
    reveal.add_argument("--input-shape", default=None, metavar="C,H,W",
                        help="input shape of a checkpoint's model that does not record one (resnet50, ...)")
    reveal.add_argument("--config", default=None, metavar="YAML",
                        help="config whose --dataset's train split is the attacker's own data (llg_plus)")
    reveal.add_argument("--dataset", default=None, metavar="NAME", help="dataset of --config (llg_plus)")
    reveal.add_argument("--certificates", default=None, metavar="FILE.npz",
                        help="rlg: write a certificate for every class (check with `labelleak verify`)")
    reveal.add_argument("update", help="update file (.npz, see README: 'The update file')")
    check = sub.add_parser("verify", help="check RLG certificates against an update, without any solver")
    check.add_argument("update", help="the update file the certificates were made for")
    check.add_argument("certificates", help="file written by `labelleak reveal --certificates`")
    sub.add_parser("attacks", help="list the registered attacks, what they need and their papers")
    upd = sub.add_parser("update", help="build an update file from a model's weights before and after local training")
    upd.add_argument("--before", required=True, metavar="BEFORE",
                     help="weights sent to the client (.pt/.pth state_dict, .safetensors, .npz of named arrays)")
    upd.add_argument("--after", required=True, metavar="AFTER", help="weights the client returned (same formats)")
    upd.add_argument("--layer", required=True, metavar="NAME",
                     help="projection layer: NAME.weight / NAME.bias (torch (C, d), transposed) or NAME.kernel (d, C)")
    upd.add_argument("--lr", type=float, default=None,
                     help="client learning rate: dW = (W_before - W_after) / lr; without it unscaled (scale 1)")
    upd.add_argument("--batch-size", type=int, default=None, metavar="N", help="samples per local step, when known")
    upd.add_argument("--steps", type=int, default=None, metavar="K", help="local steps, when known")
    upd.add_argument("-o", "--output", required=True, metavar="UPDATE.npz", help="update file to write")
    return parser


def _reveal(args) -> int:
    from labelleak.attacks import get_attack
    from labelleak.updates.format import load_observation

    attack = get_attack(args.method)
    if args.num_labels is not None and args.num_labels < 1:
        raise LabelleakError(f"--num-labels must be a positive integer, got {args.num_labels}")
    obs = load_observation(args.update)
    options = {"num_labels": args.num_labels} if args.num_labels is not None else {}
    if options and "num_labels" not in inspect.signature(attack.run).parameters:
        raise LabelleakError(f"--num-labels is not an option of {args.method}")
    options.update(_context(args, attack.needs))
    pred = attack(obs, **options)
    out = {"method": args.method, "labels": sorted(int(c) for c in pred.labels),
           "num_labels": None if pred.num_labels is None else int(pred.num_labels)}
    if pred.counts is not None:
        out["counts"] = {str(int(k)): int(v) for k, v in sorted(pred.counts.items())}
    if "spectrum" in pred.info:  # RLG: the rank estimate and its margin (last signal / first noise value)
        out["rank"] = pred.info["spectrum"]
    if args.certificates:
        if pred.evidence is None or not hasattr(pred.evidence, "save"):
            raise LabelleakError(f"--certificates: {args.method} gives no certificates")
        pred.evidence.save(args.certificates)
        out["certificates"] = str(args.certificates)
    if "transcript" in pred.info:  # gradients matching on an ASR update: the piece ids in order
        out["transcript"] = [int(t) for t in pred.info["transcript"]]
    print(json.dumps(out))
    return 0


def _context(args, needs) -> dict:
    """The model and auxiliary data an attack declares it needs, from the command line's options."""
    context = {}
    if "model" in needs and args.checkpoint:
        from labelleak.models.checkpoint import model_from_checkpoint

        shape = None
        if args.input_shape:
            try:
                shape = tuple(int(v) for v in args.input_shape.split(","))
            except ValueError:
                raise LabelleakError(f"--input-shape must be integers like 3,32,32, got {args.input_shape!r}") from None
        context["model"] = model_from_checkpoint(args.checkpoint, shape)
    from labelleak.jobs.context import update_context

    context.update(update_context(needs, args.update))  # the decoder's update, as the DAG's attack job reads it
    if "aux_data" in needs and args.config and args.dataset:
        from labelleak.config import load_config
        from labelleak.jobs.context import auxiliary_data

        cfg = load_config(args.config)
        if args.dataset not in cfg["datasets"]:
            raise LabelleakError(f"--dataset {args.dataset!r} is not a dataset of {args.config}")
        context["aux_data"] = auxiliary_data(cfg, args.dataset)
    return context


def _verify(args) -> int:
    """Exit 0 when every certificate holds, 1 when any fails (the JSON names the problems)."""
    from labelleak.attacks.rlg import Certificates, verify
    from labelleak.updates.format import load_observation

    report = verify(load_observation(args.update).dW, Certificates.load(args.certificates))
    out = {**report.describe(), "labels": sorted(Certificates.load(args.certificates).labels)}
    print(json.dumps(out))
    return 0 if report.ok else 1


def _update(args) -> int:
    """Write the update file of (before - after) / lr and print what was written as one JSON object."""
    from labelleak.updates.format import save_update
    from labelleak.updates.from_weights import update_from_weights

    obs = update_from_weights(args.before, args.after, args.layer, lr=args.lr,
                              batch_size=args.batch_size, steps=args.steps)
    try:
        save_update(args.output, obs.dW, db=obs.db, W=obs.W, b=obs.b, batch_size=obs.batch_size,
                    steps=obs.steps, meta=obs.meta)
    except OSError as exc:  # an unwritable -o: one line, like every other bad input
        raise LabelleakError(f"{args.output}: cannot write ({exc.strerror or exc})") from None
    print(json.dumps({"update": str(args.output), "dW": list(obs.dW.shape), "db": obs.db is not None,
                      "batch_size": obs.batch_size, "steps": obs.steps, **obs.meta}))
    return 0


def _attacks(args) -> int:
    from labelleak.attacks import registry

    for name, attack in sorted(registry().items()):
        needs = ", ".join(sorted(attack.needs)) or "dW only"
        print(f"{name:10s} needs: {needs:24s} {attack.paper}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    commands = {"reveal": _reveal, "attacks": _attacks, "verify": _verify, "update": _update}
    from threadpoolctl import threadpool_limits

    try:
        # one BLAS thread, as the pipeline's attack jobs: RLG's many small QR/SVD/LP calls are latency-bound,
        # and threads sharing a busy core made a 16k-class reveal 2.8x slower (2.75 s vs 0.96 s, measured)
        with threadpool_limits(limits=1):
            return commands[args.command](args)
    except NotApplicable as exc:
        print(f"labelleak: not applicable: {exc}", file=sys.stderr)
        return EXIT_NOT_APPLICABLE
    except LabelleakError as exc:
        print(f"labelleak: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
