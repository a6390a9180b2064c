"""``labelleak`` command line: one update at a time.

``labelleak reveal --method NAME UPDATE.npz`` prints one JSON object
``{"method": ..., "labels": [sorted class ids], "num_labels": <S estimate or null>}``
(count-capable attacks add ``"counts": {class: n}``) and exits 0. Bad input exits 2 with one line
on stderr; an attack whose assumptions do not hold for the update exits 3 with one line.
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
    reveal.add_argument("update", help="update file (.npz, see README: 'The update file')")
    sub.add_parser("attacks", help="list the registered attacks, what they need and their papers")
    return parser


def _reveal(args) -> int:
    from labelleak.attacks import get_attack
    from labelleak.updates.format import load_observation

    attack = get_attack(args.method)
    obs = load_observation(args.update)
    options = {"num_labels": args.num_labels} if args.num_labels is not None else {}
    if options and "num_labels" not in inspect.signature(attack.run).parameters:
        raise LabelleakError(f"--num-labels is not an option of {args.method}")
    pred = attack(obs, **options)
    out = {"method": args.method, "labels": sorted(int(c) for c in pred.labels),
           "num_labels": None if pred.num_labels is None else int(pred.num_labels)}
    if pred.counts is not None:
        out["counts"] = {str(int(k)): int(v) for k, v in sorted(pred.counts.items())}
    print(json.dumps(out))
    return 0


def _attacks(args) -> int:
    from labelleak.attacks import registry

    for name, attack in sorted(registry().items()):
        needs = ", ".join(sorted(attack.needs)) or "dW only"
        print(f"{name:10s} needs: {needs:24s} {attack.paper}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    commands = {"reveal": _reveal, "attacks": _attacks}
    try:
        return commands[args.command](args)
    except NotApplicable as exc:
        print(f"labelleak: not applicable: {exc}", file=sys.stderr)
        return EXIT_NOT_APPLICABLE
    except LabelleakError as exc:
        print(f"labelleak: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
