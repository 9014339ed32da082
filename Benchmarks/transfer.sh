#!/usr/bin/env bash
# The transfer-learning experiment of BENCHMARKS.md: pretrain SmallCNN on Fashion-MNIST's classes 0-4, then learn
# classes 5-9 from a few labelled images of each, three ways (and a fourth that freezes, then unfreezes), for
# several label budgets and seeds. Prints one row per run: method, images per class, seed, test accuracy on the
# 5,000 test images of classes 5-9 (best.safetensors by validation loss; the probe has no validation split).
#
#     swift build -c release --product kiln
#     bash Benchmarks/transfer.sh [OUT] [PER_CLASS...]      # OUT defaults to runs/transfer, budgets to 60 120
set -euo pipefail
kiln=${KILN:-.build/release/kiln}
out=${1:-runs/transfer}
shift || true
budgets=("$@")
[ ${#budgets[@]} -gt 0 ] || budgets=(60 120)
seeds=(1 2 3)
common=(--model smallcnn --device host)

if [ ! -f "$out/pretrained/best.safetensors" ]; then
    "$kiln" train "${common[@]}" --only-classes 0-4 --epochs 8 --out "$out/pretrained" | grep -v ETA
fi
pretrained="$out/pretrained/best.safetensors"
accuracy() { python3 -c "import json,sys; print('%.2f' % (100 * json.load(open(sys.argv[1]))['accuracy']))" "$1/test.json"; }

for per in "${budgets[@]}"; do
    for seed in "${seeds[@]}"; do
        data=(--only-classes 5-9 --per-class "$per" --seed "$seed" --batch-size 32)
        "$kiln" train "${common[@]}" "${data[@]}" --epochs 20 --out "$out/scratch-$per-$seed" --overwrite > /dev/null
        echo "scratch $per $seed $(accuracy "$out/scratch-$per-$seed")"
        "$kiln" train "${common[@]}" "${data[@]}" --epochs 20 --lr 0.01 --init "$pretrained" \
            --out "$out/fine-tune-$per-$seed" --overwrite > /dev/null
        echo "fine-tune $per $seed $(accuracy "$out/fine-tune-$per-$seed")"
        "$kiln" train "${common[@]}" "${data[@]}" --epochs 20 --init "$pretrained" --freeze-until fc2 --unfreeze-at 6 \
            --lr-backbone 0.005 --out "$out/freeze-then-unfreeze-$per-$seed" --overwrite > /dev/null
        echo "freeze-then-unfreeze $per $seed $(accuracy "$out/freeze-then-unfreeze-$per-$seed")"
        probe=$("$kiln" features --checkpoint "$pretrained" --device host --layer 18 --only-classes 5-9 --per-class "$per" \
            --seed "$seed" --linear-probe \
            --out "$out/features-$per-$seed.safetensors" | grep "linear probe")
        echo "linear-probe $per $seed $(sed -E 's/.*test accuracy ([0-9.]+)%.*/\1/' <<< "$probe")"
    done
done
