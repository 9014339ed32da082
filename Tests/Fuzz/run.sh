#!/usr/bin/env bash
# Builds the libFuzzer targets of Kiln's file parsers and runs each for a bounded number of executions.
#
#   Tests/Fuzz/run.sh [EXECUTIONS] [TARGET...]     (default 50000 executions; targets: safetensors idx cifar png pgm jpeg config fitstate)
#
# The parsers' sources are compiled with `swiftc -sanitize=fuzzer,address` into .build/fuzz/kiln-fuzz, which
# runs the target it is named after (fuzz-safetensors, ...). Each target starts from its committed seeds in
# Tests/Fuzz/corpus/TARGET and keeps what it finds in .build/fuzz/corpus/TARGET (not committed). Fails, with
# the crashing input under .build/fuzz/artifacts/TARGET/, when any target traps, raises anything but
# KilnError.corruptFile, breaks an invariant, leaks memory or exceeds the memory limit. Environment:
# FUZZ_MAX_LEN (default 4096), FUZZ_FRESH=1 to start from the seeds only.
set -euo pipefail
# Let libFuzzer report a trap itself: the Swift runtime's backtracer would otherwise run under ASan.
export SWIFT_BACKTRACE=enable=no
cd "$(dirname "$0")/../.."
executions=${1:-50000}
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(safetensors idx cifar png pgm jpeg config fitstate)
max_len=${FUZZ_MAX_LEN:-4096}
out=.build/fuzz
mkdir -p "$out"

sources=(Sources/Kiln/KilnError.swift Sources/Kiln/Checkpoint/SafeTensors.swift Sources/Kiln/Checkpoint/JSONFiles.swift
         Sources/Kiln/Data/Dataset.swift Sources/Kiln/Data/Gzip.swift Sources/Kiln/Data/ImageFile.swift
         Sources/Kiln/Data/JPEG.swift Sources/Kiln/Data/ImageResize.swift Sources/Kiln/Data/ImageFolder.swift
         Sources/Kiln/Random/Philox.swift Sources/Kiln/Random/SeedMixing.swift
         Sources/Kiln/Training/TrainingConfiguration.swift Sources/Kiln/Training/FitState.swift
         Tests/Fuzz/Support/Device.swift Tests/Fuzz/FuzzTargets.swift)
echo "fuzz: building $out/kiln-fuzz"
start=$SECONDS
# The JPEG decoder's C side, instrumented like the rest, and a module map for Swift to import it by.
mkdir -p "$out/cjpeg"
printf 'module CJPEG {\n    header "%s/Sources/CJPEG/include/kiln_jpeg.h"\n    export *\n}\n' "$PWD" > "$out/cjpeg/module.modulemap"
if ! clang -c -O1 -g -fsanitize=fuzzer-no-link,address -I Sources/CJPEG/include Sources/CJPEG/jpeg.c -o "$out/jpeg.o" >"$out/build.log" 2>&1 ||
   ! swiftc -sanitize=fuzzer,address -parse-as-library -O -g -module-name Kiln -I Sources/CZlib -I "$out/cjpeg" -lz -ljpeg \
        "${sources[@]}" "$out/jpeg.o" -o "$out/kiln-fuzz" >>"$out/build.log" 2>&1; then
    grep -v "Cannot export local symbol" "$out/build.log" >&2
    echo "fuzz: the build failed" >&2
    exit 1
fi
echo "fuzz: built in $((SECONDS - start)) s"

failed=()
for target in "${targets[@]}"; do
    [ -d "Tests/Fuzz/corpus/$target" ] || { echo "fuzz: no target '$target'" >&2; exit 2; }
    ln -f "$out/kiln-fuzz" "$out/fuzz-$target"
    corpus="$out/corpus/$target" artifacts="$out/artifacts/$target/"
    [ "${FUZZ_FRESH:-0}" = 1 ] && rm -rf "$corpus"
    mkdir -p "$corpus" "$artifacts"
    start=$SECONDS
    set +e
    "$out/fuzz-$target" -runs="$executions" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$artifacts" "$corpus" "Tests/Fuzz/corpus/$target" >"$out/$target.log" 2>&1
    status=$?
    set -e
    done_line=$(grep -E "^Done [0-9]+ runs" "$out/$target.log" | tail -1 || true)
    if [ $status -eq 0 ]; then
        echo "fuzz: $target: ${done_line:-finished} ($((SECONDS - start)) s wall, corpus $(ls "$corpus" | wc -l) inputs)"
    else
        echo "fuzz: $target FAILED (exit $status) after $((SECONDS - start)) s; last lines of $out/$target.log:" >&2
        tail -40 "$out/$target.log" >&2
        ls "$artifacts" >&2 || true
        failed+=("$target")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: failed: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz: all ${#targets[@]} targets ran $executions executions without a failure"
