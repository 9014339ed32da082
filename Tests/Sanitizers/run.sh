#!/usr/bin/env bash
# Builds the test bundle with a sanitizer and runs it.
#
#   Tests/Sanitizers/run.sh address [TESTS]    the whole suite under AddressSanitizer and LeakSanitizer
#   Tests/Sanitizers/run.sh thread [TESTS]     the tests that run threads, under ThreadSanitizer
#
# TESTS is an XCTest filter (`KilnTests.DataTests,KilnCLTests`); each sanitizer builds into its own
# .build/sanitize-NAME. Fails when a test fails or the sanitizer reports anything.
set -euo pipefail
cd "$(dirname "$0")/../.."
sanitizer=${1:?usage: Tests/Sanitizers/run.sh address|thread [TESTS]}
scratch=.build/sanitize-$sanitizer
case $sanitizer in
address)
    filter=${2:-}
    # LLVM inside POCL gives a thread that compiles a program a larger alternate signal stack than ASan's,
    # which ASan then fails to unmap when the thread ends ("unable to unmmap", error code 22); ASan's own
    # stack is not needed to report memory errors. Leaks reported inside XCTest, POCL and the OpenCL loader,
    # which allocate once per process and never free, are listed in leaks.supp.
    export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}use_sigaltstack=0:detect_leaks=1
    export LSAN_OPTIONS=suppressions=$PWD/Tests/Sanitizers/leaks.supp:print_suppressions=1
    ;;
thread)
    # The host backend's threads, the data loader's prefetch thread, eight threads starting OpenCL at once,
    # the program and buffer caches, and the warm-up's parallel builds.
    filter=${2:-KilnTests.HostReferenceTests,KilnTests.ConcurrentStartTests,KilnTests.DataTests,KilnTests.TrainingTests,KilnTests.TrainingRunTests,KilnTests.ConvolutionTests,KilnTests.AugmentationTests,KilnCLTests.DiscoveryTests,KilnCLTests.ProgramTests,KilnCLTests.ProgramCacheTests,KilnCLTests.AllocatorTests,KilnTests.WarmupTests}
    export TSAN_OPTIONS=halt_on_error=0:exitcode=66
    ;;
*) echo "usage: Tests/Sanitizers/run.sh address|thread [TESTS]" >&2; exit 64 ;;
esac
# A report inside the Swift runtime's backtracer would be about the backtracer.
export SWIFT_BACKTRACE=enable=no
swift build --build-tests --sanitize="$sanitizer" --scratch-path "$scratch"
bundle=$scratch/debug/KilnPackageTests.xctest
log=$scratch/test.log
set +e
if [ -n "$filter" ]; then "$bundle" "$filter"; else "$bundle"; fi 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
reports=$(grep -cE "^(==[0-9]+==ERROR|WARNING: ThreadSanitizer|SUMMARY: (Address|Leak|Thread)Sanitizer)" "$log" || true)
echo "sanitize: $sanitizer: exit $status, $reports sanitizer report(s); log in $log"
[ "$status" -eq 0 ] && [ "$reports" -eq 0 ]
