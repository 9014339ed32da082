#!/usr/bin/env python3
"""Mutation check: applies deliberate bugs to a scratch copy of the committed tree, one at a time, runs the
tests that should notice, and reports whether each bug is caught ("killed"). A mutant that survives is a
hole in the tests.

    python3 Tests/Mutations/mutate.py            # every mutant; the scratch copy is kept in $TMPDIR/kiln-mutants
    python3 Tests/Mutations/mutate.py ELU LRN    # only the mutants whose names start with these words
    python3 Tests/Mutations/mutate.py --write    # also rewrite Tests/Mutations/RESULTS.md

Each mutant changes source text that must appear exactly once in its file, so a refactoring that moves the
code makes the script fail loudly rather than test nothing. The scratch copy keeps its build folder between
runs; one mutant costs an incremental build and a filtered test run.
"""
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRATCH = os.path.join(tempfile.gettempdir(), "kiln-mutants")

# (name, what the bug is, [(file, original, mutated)], test filter)
MUTANTS = [
    ("ELU derivative", "the ELU derivative uses expm1 instead of exp, on both backends", [
        ("Sources/Kiln/Backends/Host/HostActivation.swift",
         "case let .elu(alpha): return x > 0 ? 1 : alpha * Foundation.exp(x)",
         "case let .elu(alpha): return x > 0 ? 1 : alpha * Foundation.expm1(x)"),
        ("Kernels/activation.cl",
         "case ACTIVATION_ELU: return x > 0.0f ? 1.0f : p * exp(x);",
         "case ACTIVATION_ELU: return x > 0.0f ? 1.0f : p * expm1(x);"),
    ], "ActivationTests|KnownAnswerTests"),
    ("LRN scale", "LRN scales the sum of squares by alpha instead of alpha / size, on both backends", [
        ("Sources/Kiln/Backends/Host/HostNormalization.swift",
         "return Double(settings.k) + Double(settings.alpha) / Double(settings.size) * sum",
         "return Double(settings.k) + Double(settings.alpha) * sum"),
        ("Kernels/lrn.cl", "return k + alpha / (float)size * sum;", "return k + alpha * sum;"),
    ], "NormalizationTests|KnownAnswerTests"),
    ("Dropout mask", "dropout passes its input through without the mask (shared by both backends)", [
        ("Sources/Kiln/Ops/Dropout.swift",
         "        if mask.count == x.count {\n            try binary(.mul, x, mask, into: y)",
         "        if mask.count == x.count {\n            try copy(x, to: y)"),
    ], "DropoutTests"),
    ("SGD weight decay", "the host's fast SGD-momentum loop forgets the weight decay term", [
        ("Sources/Kiln/Backends/Host/HostOptimizer.swift",
         "s0[i] = momentum * s0[i] + gradient[i] + decay * p[i]",
         "s0[i] = momentum * s0[i] + gradient[i]"),
    ], "OptimizerTests|KnownAnswerTests"),
    ("Adam bias correction", "Adam skips its bias correction, on both backends", [
        ("Sources/Kiln/Backends/Host/HostOptimizer.swift",
         "p[i] -= lr * (s0[i] / corrected1) / ((s1[i] / corrected2).squareRoot() + epsilon)",
         "p[i] -= lr * s0[i] / (s1[i].squareRoot() + epsilon)"),
        ("Kernels/optimizer.cl", "w -= lr * (*a / c1) / (sqrt(*b / c2) + h2);", "w -= lr * *a / (sqrt(*b) + h2);"),
    ], "OptimizerTests|KnownAnswerTests"),
    ("RMSProp momentum", "RMSProp with momentum damps its buffer by (1 - momentum), on both backends", [
        ("Sources/Kiln/Backends/Host/HostOptimizer.swift",
         "s1[i] = momentum * s1[i] + scaled", "s1[i] = momentum * s1[i] + (1 - momentum) * scaled"),
        ("Kernels/optimizer.cl", "*b = h2 * *b + scaled;", "*b = h2 * *b + (1.0f - h2) * scaled;"),
    ], "OptimizerTests|KnownAnswerTests"),
    ("Pooling window", "pooling windows stop one row and column short, on both backends", [
        ("Sources/Kiln/Backends/Host/HostPooling.swift",
         "return Swift.max(start, 0)..<Swift.min(start + size, limit)",
         "return Swift.max(start, 0)..<Swift.min(start + size - 1, limit)"),
        ("Kernels/pool.cl", "    for (uint i = 0; i < kh; ++i) {\n        const int h = (int)(oh * sh + i) - ph;",
         "    for (uint i = 0; i + 1 < kh; ++i) {\n        const int h = (int)(oh * sh + i) - ph;"),
    ], "PoolingTests"),
    ("BCE loss", "binary cross-entropy with logits drops the log1p term's absolute value, on both backends", [
        ("Sources/Kiln/Backends/Host/HostLoss.swift",
         "total += Double(Swift.max(x[i], 0) - x[i] * t[i] + Foundation.log1p(Foundation.exp(-Swift.abs(x[i]))))",
         "total += Double(Swift.max(x[i], 0) - x[i] * t[i] + Foundation.log1p(Foundation.exp(-x[i])))"),
        ("Kernels/loss.cl", "element_loss[i] = fmax(x, 0.0f) - x * y + log1p(exp(-fabs(x)));",
         "element_loss[i] = fmax(x, 0.0f) - x * y + log1p(exp(-x));"),
    ], "LossTests|KnownAnswerTests"),
]


def run(command, cwd, log):
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(command)}\n")
        out.flush()
        return subprocess.run(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT).returncode


def prepare():
    os.makedirs(SCRATCH, exist_ok=True)
    # The committed tree, laid over the scratch copy (its .build stays).
    archive = subprocess.run(["git", "-C", ROOT, "archive", "HEAD"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", SCRATCH], input=archive, check=True)


def main():
    arguments = [a for a in sys.argv[1:] if not a.startswith("--")]
    chosen = [m for m in MUTANTS if not arguments or any(m[0].startswith(a) for a in arguments)]
    prepare()
    log = os.path.join(SCRATCH, "mutants.log")
    open(log, "w").close()
    if run(["swift", "build", "--build-tests"], SCRATCH, log) != 0:
        sys.exit(f"the unmutated tree does not build; see {log}")
    results = []
    for name, description, edits, tests in chosen:
        originals = {}
        for path, before, after in edits:
            full = os.path.join(SCRATCH, path)
            text = originals.setdefault(full, open(full).read())
            current = open(full).read()
            if current.count(before) != 1:
                sys.exit(f"{name}: {path} holds the original text {current.count(before)} times, not once: update the mutant")
            with open(full, "w") as f:
                f.write(current.replace(before, after))
        start = time.time()
        try:
            built = run(["swift", "build", "--build-tests"], SCRATCH, log) == 0
            status = run(["swift", "test", "--skip-build", "--filter", tests], SCRATCH, log) if built else None
        finally:
            for full, text in originals.items():
                with open(full, "w") as f:
                    f.write(text)
        if status is None:
            verdict = "did not build"
        else:
            verdict = "killed" if status != 0 else "SURVIVED"
        results.append((name, description, tests, verdict, time.time() - start))
        print(f"{verdict:9} {name}: {description} ({tests}, {time.time() - start:.0f} s)", flush=True)
    survived = [r for r in results if r[3] != "killed"]
    if "--write" in sys.argv:
        with open(os.path.join(ROOT, "Tests/Mutations/RESULTS.md"), "w") as f:
            f.write("# Mutation check results\n\n")
            f.write("`python3 Tests/Mutations/mutate.py --write`; each mutant is built and the listed tests run against it.\n\n")
            f.write("| mutant | the bug | tests run | result |\n|---|---|---|---|\n")
            for name, description, tests, verdict, _ in results:
                f.write(f"| {name} | {description} | `{tests}` | {verdict} |\n")
            f.write(f"\n{len(results) - len(survived)} of {len(results)} mutants killed.\n")
    print(f"{len(results) - len(survived)} of {len(results)} mutants killed; log: {log}")
    sys.exit(1 if survived else 0)


if __name__ == "__main__":
    main()
