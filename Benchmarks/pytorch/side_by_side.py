"""Kiln's host backend against PyTorch on the CPU, measured in alternation so that both see the same machine:
each round runs `kiln bench` and peers.py once; the table gives every figure's median over the rounds,
with its range.

    swift build -c release --product kiln
    python3 Benchmarks/pytorch/side_by_side.py [--rounds 5] [--models lenet-bn] [--device host]
"""
import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(command):
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--models", default="lenet-bn")
    parser.add_argument("--device", default="host")
    parser.add_argument("--kiln", default=str(ROOT / ".build/release/kiln"))
    args = parser.parse_args()
    figures = {}
    for _ in range(args.rounds):
        kiln = run([args.kiln, "bench", "--device", args.device, "--models", args.models, "--no-ops", "--json"])
        torch = run([sys.executable, str(ROOT / "Benchmarks/pytorch/peers.py"), "--models", args.models, "--json"])
        for record in kiln + torch:
            if record.get("model"):
                side = "kiln" if record["backend"] != "pytorch" else "pytorch"
                figures.setdefault((record["model"], record["batch"], record["mode"]), {}).setdefault(side, []).append(
                    record["images_per_second"])
    print("| model | batch | mode | Kiln images/s (median, range) | PyTorch images/s (median, range) | Kiln / PyTorch |")
    print("|---|---|---|---|---|---|")
    for (model, batch, mode), sides in sorted(figures.items()):
        kiln, torch = sides.get("kiln", [float("nan")]), sides.get("pytorch", [float("nan")])
        cell = lambda v: f"{statistics.median(v):,.0f} ({min(v):,.0f}–{max(v):,.0f})"
        print(f"| {model} | {batch} | {mode} | {cell(kiln)} | {cell(torch)} | "
              f"{statistics.median(kiln) / statistics.median(torch):.2f}x |")


if __name__ == "__main__":
    main()
