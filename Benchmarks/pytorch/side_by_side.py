"""Kiln against a peer on the same machine, measured in alternation so that both see the same machine: each
round runs `kiln bench` and the peer's script once; the table gives every figure's median over the rounds,
with its range. Peers: PyTorch on the CPU (Benchmarks/pytorch/peers.py, against Kiln's host backend) and
tinygrad's OpenCL backend (Benchmarks/tinygrad/peers.py, against Kiln on the same OpenCL device, POCL here).

    swift build -c release --product kiln
    python3 Benchmarks/pytorch/side_by_side.py [--rounds 5] [--models lenet-bn] [--device host]
    python3 Benchmarks/pytorch/side_by_side.py --peer tinygrad --device cl:0:0 [--batches 64,256]
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
    parser.add_argument("--peer", choices=["pytorch", "tinygrad"], default="pytorch")
    parser.add_argument("--batches", help="comma-separated batch sizes for both sides (default: each side's own)")
    parser.add_argument("--kiln", default=str(ROOT / ".build/release/kiln"))
    args = parser.parse_args()
    sizes = ["--batches", args.batches] if args.batches else []
    figures = {}
    for _ in range(args.rounds):
        kiln = run([args.kiln, "bench", "--device", args.device, "--models", args.models, "--no-ops", "--json"] + sizes)
        peer = run([sys.executable, str(ROOT / f"Benchmarks/{args.peer}/peers.py"), "--models", args.models, "--json"]
                   + (sizes if args.peer == "tinygrad" else []))
        for record in kiln + peer:
            if record.get("model"):
                side = "peer" if record["backend"] == args.peer else "kiln"
                figures.setdefault((record["model"], record["batch"], record["mode"]), {}).setdefault(side, []).append(
                    record["images_per_second"])
    name = {"pytorch": "PyTorch", "tinygrad": "tinygrad"}[args.peer]
    print(f"| model | batch | mode | Kiln images/s (median, range) | {name} images/s (median, range) | Kiln / {name} |")
    print("|---|---|---|---|---|---|")
    for (model, batch, mode), sides in sorted(figures.items()):
        if "kiln" not in sides or "peer" not in sides:
            continue
        kiln, peer = sides["kiln"], sides["peer"]
        cell = lambda v: f"{statistics.median(v):,.0f} ({min(v):,.0f}–{max(v):,.0f})"
        print(f"| {model} | {batch} | {mode} | {cell(kiln)} | {cell(peer)} | "
              f"{statistics.median(kiln) / statistics.median(peer):.2f}x |")


if __name__ == "__main__":
    main()
