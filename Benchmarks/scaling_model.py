#!/usr/bin/env python3
"""How far data-parallel training scales: the ring all-reduce cost of a step's gradients against its compute.

A ring all-reduce of M bytes over N ranks sends and receives 2(N-1)/N * M bytes per rank in 2(N-1) steps, so
    T(M, N) = 2(N-1) * alpha + 2(N-1)/N * M / B
for a link of bandwidth B (bytes/s) and per-message latency alpha. Gradients go in buckets (kiln train's
--bucket-mb, 25 MB), each its own all-reduce started as the backward pass finishes its layers, so all but the
last bucket's cost can hide behind the rest of the backward pass. With a step of compute time C (per rank,
at its share of the batch) of which a fraction f is backward still running after the first bucket is ready:
    exposed = max(T(last bucket), T(all buckets) - f * C),   efficiency = C / (C + exposed).
Without overlap (f = 0) the whole T is exposed.

    python3 Benchmarks/scaling_model.py                        # ResNet-18's table
    python3 Benchmarks/scaling_model.py --fit allreduce.json   # alpha and B of a `kiln bench --all-reduce --json` run
"""
import argparse
import json


def ring_seconds(message_bytes, ranks, alpha, bandwidth):
    if ranks == 1:
        return 0.0
    return 2 * (ranks - 1) * alpha + 2 * (ranks - 1) / ranks * message_bytes / bandwidth


def buckets(gradient_bytes, bucket_bytes):
    sizes = []
    left = gradient_bytes
    while left > 0:
        sizes.append(min(bucket_bytes, left))
        left -= bucket_bytes
    return sizes


def efficiency(ranks, step_seconds, gradient_bytes, bucket_bytes, alpha, bandwidth, overlap):
    parts = buckets(gradient_bytes, bucket_bytes)
    total = sum(ring_seconds(size, ranks, alpha, bandwidth) for size in parts)
    exposed = max(ring_seconds(parts[-1], ranks, alpha, bandwidth), total - overlap * step_seconds)
    return step_seconds / (step_seconds + exposed)


def largest_ranks(threshold, **model):
    """The largest power of two N <= 4096 that keeps efficiency >= threshold (1 if even 2 ranks fall short)."""
    best = 1
    for exponent in range(1, 13):
        if efficiency(2 ** exponent, **model) >= threshold:
            best = 2 ** exponent
        else:
            break
    return best


def fit(path):
    """alpha and B from a 2-rank (or N-rank) all-reduce table: T = 2(N-1) alpha + 2(N-1)/N M / B, least squares."""
    records = json.load(open(path))
    ranks = records[0]["ranks"]
    xs = [2 * (ranks - 1) / ranks * r["bytes"] for r in records]
    ys = [r["seconds"] for r in records]
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum((x - mean_x) ** 2 for x in xs)
    intercept = mean_y - slope * mean_x
    # The smallest message's time is the better latency estimate: the fit's intercept is dominated by the large ones.
    alpha = min(ys) / (2 * (ranks - 1))
    return alpha, 1 / slope, intercept


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gradient-mb", type=float, default=44.7, help="gradient bytes per step (ResNet-18, 11.2 M parameters: 44.7)")
    parser.add_argument("--bucket-mb", type=float, default=25)
    parser.add_argument("--overlap", type=float, default=0.6, help="share of the step the backward pass still runs after the first bucket")
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--fit", help="a `kiln bench --all-reduce --json` file: print its alpha and B")
    arguments = parser.parse_args()

    if arguments.fit:
        alpha, bandwidth, intercept = fit(arguments.fit)
        print(f"fitted: alpha {alpha * 1e6:.1f} µs per message step, B {bandwidth / 1e9:.2f} GB/s (intercept {intercept * 1e6:.1f} µs)")
        return

    gradient = arguments.gradient_mb * 1e6
    bucket = arguments.bucket_mb * 1e6
    networks = [("1 Gb/s Ethernet (TCP)", 50e-6, 0.125e9), ("10 Gb/s Ethernet (TCP)", 25e-6, 1.25e9),
                ("25 Gb/s Ethernet (TCP)", 20e-6, 3.1e9), ("100 Gb/s InfiniBand / RoCE", 2e-6, 12.5e9)]
    steps = [0.025, 0.1, 0.4, 1.6]
    print(f"gradients {arguments.gradient_mb:g} MB in buckets of {arguments.bucket_mb:g} MB; "
          f"largest N (power of two, up to 4096) with efficiency >= {arguments.threshold:.0%}, overlap f = {arguments.overlap:g} "
          f"(and without overlap)\n")
    print("| network | alpha | B | " + " | ".join(f"step {s * 1e3:g} ms" for s in steps) + " |")
    print("|---|---:|---:|" + "---:|" * len(steps))
    for name, alpha, bandwidth in networks:
        cells = []
        for step in steps:
            model = dict(step_seconds=step, gradient_bytes=gradient, bucket_bytes=bucket, alpha=alpha, bandwidth=bandwidth)
            with_overlap = largest_ranks(arguments.threshold, overlap=arguments.overlap, **model)
            without = largest_ranks(arguments.threshold, overlap=0, **model)
            cells.append(f"{with_overlap if with_overlap > 1 else '—'} ({without if without > 1 else '—'})")
        print(f"| {name} | {alpha * 1e6:g} µs | {bandwidth / 1e9:g} GB/s | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
