"""What the peer scripts share: timing a step the way `kiln bench` times its own (one untimed call, a warm-up
that also sizes the repeats, then the median over repeats of enough calls to last about half a second, at most
ten, with fewer repeats for steps that take seconds), and their records in `kiln bench`'s JSON fields."""
import json
import statistics
import time


def per_step(step, sync, repeats=5, max_steps=10):
    start = time.perf_counter()
    step()
    sync()
    first = time.perf_counter() - start
    steps = max(1, min(max_steps, int(0.5 / max(first, 1e-6))))
    times = []
    for _ in range(3 if first > 2 else repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        times.append((time.perf_counter() - start) / steps)
    return statistics.median(times)


def records_for(backend, device, model, batch, seconds_by_mode):
    """One record per (mode, seconds), mode "train" or "infer"."""
    return [{"backend": backend, "device": device, "model": model, "batch": batch, "mode": mode,
             "images_per_second": batch / seconds, "seconds": seconds} for mode, seconds in seconds_by_mode]


def print_records(records, as_json):
    if as_json:
        print(json.dumps(records, indent=2))
    else:
        for r in records:
            print(f"| {r['model']} | {r['batch']} | {r['mode']} | {r['images_per_second']:.0f} img/s | {r['device']} |")
