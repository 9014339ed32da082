#!/usr/bin/env bash
# Data-parallel training on one machine: the all-reduce between 2 ranks (shared memory, then TCP over the
# loopback interface) and training throughput with 2 ranks × 1 thread against 1 process × 2 threads, in
# alternating rounds. Needs a release build (swift build -c release) and Open MPI.
#   bash Benchmarks/data_parallel.sh [DATA] [ROUNDS]
# DATA: a data set (default: Fashion-MNIST; a folder of MNIST-format files with a small test set saves the test score's time); the runs train on 300 images of each class at 28×28
# (LeNet-BN) and 60 of each at 32×32 (ResNet-18), and score the test set once at the end, outside the timing.
set -euo pipefail
cd "$(dirname "$0")/.."
kiln=.build/release/kiln
data=${1:-fashion-mnist}
rounds=${2:-3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpi=(mpirun --oversubscribe -np 2)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

echo "## all-reduce, 2 ranks, shared memory (Open MPI's default on one machine)"
"${mpi[@]}" "$kiln" bench --all-reduce --repeats 20
"${mpi[@]}" "$kiln" bench --all-reduce --repeats 20 --json > "$scratch/shm.json"
python3 Benchmarks/scaling_model.py --fit "$scratch/shm.json"
echo "## all-reduce, 2 ranks, TCP over loopback"
"${mpi[@]}" --mca btl tcp,self --mca btl_tcp_if_include lo "$kiln" bench --all-reduce --repeats 20
"${mpi[@]}" --mca btl tcp,self --mca btl_tcp_if_include lo "$kiln" bench --all-reduce --repeats 20 --json > "$scratch/tcp.json"
python3 Benchmarks/scaling_model.py --fit "$scratch/tcp.json"

# The training pass's images/s of the epoch line (the pass alone: validation and the test score come after it).
throughput() { grep -o 'epoch 2: .*| \([0-9]*\) img/s' | grep -o '[0-9]* img/s$' | tr -d ' img/s'; }
run() {  # label, then the kiln train arguments
    local label=$1; shift
    rm -rf "$scratch/run"
    echo "$label: $("$@" --out "$scratch/run" --tensorboard off 2>&1 | tr '\r' '\n' | throughput) img/s"
}
for model in lenet-bn resnet18; do
    if [ "$model" = lenet-bn ]; then options=(--model lenet-bn --per-class 300 --batch-size 64)
    else options=(--model resnet18 --image-size 32 --per-class 60 --batch-size 64); fi
    common=(train --data "$data" --device host --epochs 2 --seed 1 "${options[@]}")
    echo "## $model, global batch 64, epoch 2's training pass"
    for round in $(seq "$rounds"); do
        run "round $round, 1 process × 2 threads" "$kiln" "${common[@]}" --threads 2
        run "round $round, 2 ranks × 1 thread" "${mpi[@]}" "$kiln" "${common[@]}"
        if [ "$model" = resnet18 ]; then
            run "round $round, 2 ranks × 1 thread, one 1000 MB bucket (no overlap)" "${mpi[@]}" "$kiln" "${common[@]}" --bucket-mb 1000
            run "round $round, 2 ranks × 1 thread, --sync-bn" "${mpi[@]}" "$kiln" "${common[@]}" --sync-bn
        fi
    done
done
