"""Wall time of the default run and where it goes, per rule, from Snakemake's own job records.

    python benchmarks/bench_default_run.py                 # a fresh clone of this checkout, `snakemake --cores 2 tables`
    python benchmarks/bench_default_run.py --log RUN.log   # only the breakdown of a finished run's .snakemake/log file

The breakdown reads each job's start ("[date]" then "rule X:" with its "jobid") and end ("Finished jobid: N")
lines of the run's log: job-seconds per rule (the sum over that rule's jobs; jobs overlap on several cores,
so the sum exceeds the wall), the number of jobs and the longest one. Measured on one machine in one run;
nothing else should run beside it (a second busy process on 2 cores slows torch jobs several-fold).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
RULE = re.compile(r"^\s*(?:local)?rule (\w+):$")
JOBID = re.compile(r"^\s*jobid: (\d+)$")
DONE = re.compile(r"^\s*Finished jobid: (\d+) \(Rule: (\w+)\)$")


def breakdown(log: Path) -> tuple[dict[str, list[float]], float]:
    """Per rule the durations of its jobs (s), and the log's first-to-last stamp (s)."""
    stamp, rule, started, durations, stamps = None, None, {}, defaultdict(list), []
    for line in log.read_text().splitlines():
        if m := STAMP.match(line.strip()):
            stamp = datetime.strptime(" ".join(m.group(1).split()), "%a %b %d %H:%M:%S %Y")
            stamps.append(stamp)
        elif m := RULE.match(line):
            rule = m.group(1)
        elif (m := JOBID.match(line)) and rule is not None:
            started[m.group(1)] = (rule, stamp)
            rule = None
        elif m := DONE.match(line.strip()):
            name, t0 = started.pop(m.group(1), (m.group(2), stamp))
            durations[name].append((stamp - t0).total_seconds())
    wall = (stamps[-1] - stamps[0]).total_seconds() if stamps else 0.0
    return durations, wall


def report(durations: dict[str, list[float]], wall: float) -> None:
    total = sum(sum(v) for v in durations.values())
    print(f"{'rule':<24}{'jobs':>6}{'job-s':>10}{'share':>8}{'longest s':>11}")
    for name, values in sorted(durations.items(), key=lambda kv: -sum(kv[1])):
        print(f"{name:<24}{len(values):>6}{sum(values):>10.0f}{sum(values) / max(total, 1e-9):>8.1%}{max(values):>11.0f}")
    print(f"{'all':<24}{sum(map(len, durations.values())):>6}{total:>10.0f}")
    print(f"wall (first to last job record): {wall / 60:.1f} min")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--log", type=Path, help="a finished run's .snakemake/log/*.snakemake.log")
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args(argv)
    if args.log is None:
        work = Path(tempfile.mkdtemp(prefix="labelleak-run-")) / "repo"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(work)], check=True)
        start = time.perf_counter()
        env = {**os.environ, "PYTHONPATH": str(work / "src")}  # the clone's code, not an editable install's tree
        proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(args.cores), "tables"], cwd=work,
                              env=env)
        print(f"snakemake --cores {args.cores} tables: exit {proc.returncode}, "
              f"{(time.perf_counter() - start) / 60:.1f} min wall from a fresh clone ({work})")
        args.log = max((work / ".snakemake" / "log").glob("*.snakemake.log"))
    report(*breakdown(args.log))
    return 0


if __name__ == "__main__":
    sys.exit(main())
