#!/usr/bin/env bash
# Time per image of each `kiln explain` method, on the host and on an OpenCL device, for LeNet-BN (28×28, the PyTorch
# fixture) and ResNet-18 (32×32, small stem, a briefly trained checkpoint made here). Each figure is the time of
# explaining IMAGES test images (default 8) with the method, PNG and .npy written, less the time of the same
# command with `--method filters` (which loads the model and data the same way and explains no image), divided by
# IMAGES: the median of RUNS runs (default 3).
#
#     swift build -c release --product kiln
#     bash Benchmarks/explain.sh [OUT] [DEVICE...]        # OUT defaults to runs/explain-bench, devices to host cl:0:0
#     IMAGES=2 RUNS=1 MODELS=resnet18-32 bash Benchmarks/explain.sh runs/explain-bench cl:0:0   # the slow rows
set -euo pipefail
kiln=${KILN:-.build/release/kiln}
out=${1:-runs/explain-bench}
shift || true
devices=("$@")
[ ${#devices[@]} -gt 0 ] || devices=(host cl:0:0)
images=${IMAGES:-8}
runs=${RUNS:-3}
mkdir -p "$out"
resnet="$out/resnet18-32/last.safetensors"
if [ ! -f "$resnet" ]; then
    "$kiln" train --model resnet18 --image-size 32 --epochs 1 --per-class 10 --val-split 0 --batch-size 20 --device host \
        --out "$out/resnet18-32" > /dev/null
fi
models=("lenet-bn:Tests/KilnTests/Fixtures/lenet_bn_pytorch.safetensors:--model lenet-bn" "resnet18-32:$resnet:")
seconds() {  # median wall time of $runs runs of the command
    for _ in $(seq "$runs"); do
        local start end
        start=$(date +%s.%N); "$@" > /dev/null; end=$(date +%s.%N)
        echo "$end - $start" | bc
    done | sort -n | sed -n "$(( (runs + 1) / 2 ))p"
}
echo "model device method ms_per_image"
for entry in "${models[@]}"; do
    IFS=: read -r name checkpoint extra <<< "$entry"
    [[ " ${MODELS:-lenet-bn resnet18-32} " == *" $name "* ]] || continue
    for device in "${devices[@]}"; do
        # shellcheck disable=SC2086
        command=("$kiln" explain --checkpoint "$checkpoint" $extra --device "$device" --index $(seq 0 $((images - 1))) --out "$out/maps")
        base=$(seconds "${command[@]}" --method filters)
        for method in saliency smoothgrad integrated-gradients gradcam occlusion feature-maps; do
            total=$(seconds "${command[@]}" --method "$method" --method filters)
            echo "$name $device $method $(echo "($total - $base) * 1000 / $images" | bc -l | xargs printf '%.1f')"
        done
    done
done
