"""Time to the first training step, with cold and with warm caches: `kiln train` on an OpenCL device against
tinygrad's OpenCL backend (Benchmarks/tinygrad/peers.py --first-step) on the same device, alternating.

A cold run gets empty folders for every cache involved (Kiln's KILN_CACHE_DIR, POCL's POCL_CACHE_DIR,
tinygrad's CACHEDB); a warm run reuses the folders of the cold run before it. The time is from starting the
process to the end of its first training step: for kiln, the first progress line, which it prints after
waiting for that step on the device; for tinygrad, the line peers.py prints after synchronising. Both load
their data first (kiln its data set, tinygrad random tensors).

    python3 Benchmarks/first_step.py [--kiln .build/release/kiln] [--baseline OTHER_KILN] [--device cl:0:0]
                                     [--models lenet-bn,resnet18] [--rounds 3] [--no-tinygrad]

`--baseline` times another kiln binary too (an earlier version), in the same rounds.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KILN_ARGS = {
    "lenet-bn": ["--model", "lenet-bn", "--per-class", "20", "--batch-size", "64"],
    "resnet18": ["--model", "resnet18", "--image-size", "32", "--per-class", "10", "--batch-size", "64"],
}


def seconds_until(command, marker, environment):
    """Seconds from starting `command` until a line of its output contains `marker` (then it is stopped)."""
    start = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment)
    output = []
    for line in process.stdout:
        output.append(line)
        if marker in line:
            elapsed = time.monotonic() - start
            process.kill()
            process.wait()
            return elapsed
    process.wait()
    sys.exit(f"{' '.join(command)} ended without printing {marker!r}:\n{''.join(output)}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--kiln", default=str(ROOT / ".build/release/kiln"))
    parser.add_argument("--baseline", help="another kiln binary to time in the same rounds")
    parser.add_argument("--device", default="cl:0:0")
    parser.add_argument("--models", default="lenet-bn")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-tinygrad", action="store_true")
    args = parser.parse_args()
    results = {}
    for round_ in range(args.rounds):
        for model in args.models.split(","):
            peers = [("kiln", args.kiln)] + ([("kiln baseline", args.baseline)] if args.baseline else [])
            peers += [] if args.no_tinygrad or model != "lenet-bn" else [("tinygrad", None)]
            for peer, binary in peers:
                folder = Path(tempfile.mkdtemp(prefix="kiln-first-step-"))
                environment = dict(os.environ, KILN_CACHE_DIR=str(folder / "kiln"), POCL_CACHE_DIR=str(folder / "pocl"),
                                   CACHEDB=str(folder / "tinygrad.db"), DEV="CL")
                for state in ["cold", "warm"]:
                    if binary:
                        command = [binary, "train", "--device", args.device, "--epochs", "1", "--out", str(folder / f"run-{state}"),
                                   *KILN_ARGS[model]]
                        marker = "epoch 1/1 1/"
                    else:
                        command = [sys.executable, str(ROOT / "Benchmarks/tinygrad/peers.py"), "--models", model, "--batches", "64",
                                   "--first-step"]
                        marker = "first step done"
                    elapsed = seconds_until(command, marker, environment)
                    results.setdefault((model, peer, state), []).append(elapsed)
                    print(f"round {round_ + 1}: {model} {peer} {state}: {elapsed:.1f} s", file=sys.stderr, flush=True)
                shutil.rmtree(folder, ignore_errors=True)
    print("| model | peer | caches | time to first step (median, min–max) |")
    print("|---|---|---|---|")
    for (model, peer, state), times in results.items():
        print(f"| {model} | {peer} | {state} | {statistics.median(times):.1f} s ({min(times):.1f}–{max(times):.1f}) |")


if __name__ == "__main__":
    main()
