"""How long ``import gradprune_lite`` takes on top of ``import torch``, in fresh processes.

    python benchmarks/import_time.py [--runs 7] [--source /path/to/a/checkout]

Each run is a new interpreter that times ``import torch`` and then, in the same process,
``import gradprune_lite`` (wall clock and this process's CPU time, which on a crowded
machine leaves out the waits for a core), and lists the heavy modules the second import added.
Prints the median of each over the runs. ``--source`` puts another checkout first on
``sys.path``, to compare two versions on the same machine in the same minute.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys

PROBE = """
import json, sys, time
wall, cpu = time.perf_counter, time.process_time
start = (wall(), cpu())
import torch
middle = (wall(), cpu())
before = set(sys.modules)
import gradprune_lite
end = (wall(), cpu())
heavy = ("matplotlib", "tqdm", "torch_pruning", "ipywidgets", "gradprune_lite.experiment")
added = [m for m in heavy if m in set(sys.modules) - before]
print(json.dumps({
    "torch": [m - s for m, s in zip(middle, start)],
    "package": [e - m for e, m in zip(end, middle)],
    "file": gradprune_lite.__file__,
    "added": added,
}))
"""


def measure(runs: int, source: str | None) -> dict:
    env = dict(os.environ)
    if source:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [source, env.get("PYTHONPATH")]))
    results = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", PROBE],
            env=env,
            cwd=source or None,  # "python -c" puts the working folder first on sys.path
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(out.stdout))

    def median(key, clock):
        return statistics.median(r[key][clock] for r in results)

    return {
        "torch": (median("torch", 0), median("torch", 1)),
        "package": (median("package", 0), median("package", 1)),
        "file": results[-1]["file"],
        "added": results[-1]["added"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--source", help="a checkout to import gradprune_lite from")
    args = parser.parse_args()
    result = measure(args.runs, args.source)
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; median of {args.runs} fresh processes"
    )
    print(f"gradprune_lite from {result['file']}")
    for label, key in (("import torch", "torch"), ("import gradprune_lite after it", "package")):
        wall, cpu = result[key]
        print(f"{label:32s} {wall:6.3f} s wall, {cpu:6.3f} s CPU")
    print(f"heavy modules it added: {result['added']}")


if __name__ == "__main__":
    main()
