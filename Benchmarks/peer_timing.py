"""How the peer scripts time a step, the way `kiln bench` times its own: one untimed call (a warm-up, which
also sizes the repeats), then the median over repeats of enough calls to last about half a second (at most
ten), with fewer repeats for steps that take seconds."""
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
