#!/usr/bin/env bash
# Runs the OpenCL kernel tests on Oclgrind's simulated device, which reports out-of-bounds accesses, data
# races and invalid API use that POCL forgives and a GPU turns into wrong numbers:
#   bash Tests/Oclgrind/run.sh [TEST CLASS ...]      (after `swift build --build-tests`; needs `oclgrind`)
# Oclgrind interposes its own OpenCL platform, so the tests' device is the simulator (it reports itself as a
# GPU). --uninitialized is left out: Oclgrind 21.10's checker stops at LLVM's `freeze` instruction, which the
# compiler it ships emits for ordinary loops. KILN_TEST_SIMULATOR=1 skips the few workspace-sized shapes and
# KILN_CONV_TUNE=0 leaves tuning to the tuner's own test. Fails when a test fails or Oclgrind reports an error.
set -uo pipefail
cd "$(dirname "$0")/../.."
bundle=.build/debug/KilnPackageTests.xctest
[ -x "$bundle" ] || { echo "error: $bundle is missing: run swift build --build-tests first" >&2; exit 1; }
command -v oclgrind > /dev/null || { echo "error: oclgrind is not installed (apt-get install oclgrind)" >&2; exit 1; }
classes=("$@")
[ ${#classes[@]} -gt 0 ] || classes=(KernelSignatureTests ActivationTests PoolingTests LossTests DropoutTests TensorOpsTests
                                     RandomTests NormalizationTests OptimizerTests KnownAnswerTests ConvolutionTests
                                     ConvolutionAlgorithmTests PointwiseConvolutionTests ConvTranspose2DTests AugmentationTests)
logs=$(mktemp -d)
export KILN_CACHE_DIR="$logs/cache" KILN_TEST_SIMULATOR=1 KILN_CONV_TUNE=0
status=0
for class in "${classes[@]}"; do
    start=$(date +%s)
    oclgrind --data-races --check-api --log "$logs/$class.log" "$bundle" "KilnTests.$class" > "$logs/$class.out" 2>&1
    tests=$?
    reports=$(grep -c -E 'Invalid (read|write)|data race|Uninitialized|error|Error' "$logs/$class.log")
    summary=$(grep -E 'Executed [0-9]+ tests?' "$logs/$class.out" | tail -1 | sed 's/^[[:space:]]*//')
    printf '%-28s %4ss  %s  oclgrind reports: %s\n' "$class" "$(( $(date +%s) - start ))" "${summary:-no summary}" "$reports"
    if [ "$tests" -ne 0 ] || [ "$reports" -ne 0 ]; then
        status=1
        grep -E 'error:' "$logs/$class.out" | head -5 | cut -c1-300
        head -40 "$logs/$class.log"
    fi
done
echo "logs: $logs"
exit $status
