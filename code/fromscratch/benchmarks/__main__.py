"""Run the benchmarks and write their results as JSON: python -m fromscratch.benchmarks [NAME...]."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from fromscratch.benchmarks import available, run
from fromscratch.site.runinfo import RunInfo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fromscratch.benchmarks")
    parser.add_argument("names", nargs="*", help=f"default: all ({', '.join(available())})")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(available()))
    if unknown:
        print(f"unknown benchmark {', '.join(unknown)}; benchmarks: {', '.join(available())}",
              file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    environment = RunInfo.start("gpu" if torch.cuda.is_available() else "cpu").environment()
    for name in args.names or available():
        print(f"== {name}", flush=True)
        result = {"benchmark": name, "environment": environment, **run(name, quick=args.quick)}
        path = args.out / f"{name}.json"
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(result.get("summary", {}), indent=1))
        print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
