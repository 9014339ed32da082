#!/usr/bin/env bash
# One call on a GPU machine measures everything BENCHMARKS.md's GPU table needs: the devices, `kiln bench` on
# the GPU with the convolution tuner on (LeNet-BN and ResNet-18 at 32x32, training and inference, and the
# per-op rows with the tuner's picks), and PyTorch + cuDNN on the same models in FP32 (TF32 off), then the
# ratio table. Budget: about 8 minutes.
#
# Here:       ../shared/gpu/pack.sh             (fills .gpu/ with a static kiln and the OpenCL libraries)
# On the GPU: bash Benchmarks/gpu/measure.sh .gpu "$OUT"
#
# Writes to OUT: devices.txt, kiln-gpu.json, kiln-gpu.md, pytorch-cuda.json, ratios.md and log.txt.
set -uo pipefail
pack=${1:?usage: measure.sh PACK_FOLDER OUT_FOLDER}
out=${2:?usage: measure.sh PACK_FOLDER OUT_FOLDER}
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$out"
exec > >(tee -a "$out/log.txt") 2>&1
on_device() { bash "$pack/on-device.sh" "$@"; }

on_device kiln devices | tee "$out/devices.txt"
# --device auto picks the GPU when there is one; the tuner is on by default off the CPU.
timeout 330 bash "$pack/on-device.sh" kiln bench --device auto --models lenet-bn,resnet18 --save "$out/kiln-gpu.json" \
    > "$out/kiln-gpu.md" || echo "kiln bench stopped with status $?"
cat "$out/kiln-gpu.md"
timeout 120 python3 "$root/Benchmarks/pytorch/peers.py" --device cuda --json > "$out/pytorch-cuda.json" \
    || echo "peers.py stopped with status $?"
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
try:
    kiln = [r for r in json.load(open(f"{out}/kiln-gpu.json")) if r.get("model")]
    torch = {(r["model"], r["batch"], r["mode"]): r for r in json.load(open(f"{out}/pytorch-cuda.json"))}
except (OSError, ValueError) as error:
    sys.exit(f"no ratio table: {error}")
lines = ["| model | batch | mode | Kiln OpenCL images/s | launches per step | PyTorch + cuDNN images/s | Kiln / PyTorch |",
         "|---|---|---|---|---|---|---|"]
for r in kiln:
    peer = torch.get((r["model"], r["batch"], r["mode"]))
    if peer:
        lines.append(f"| {r['model']} | {r['batch']} | {r['mode']} | {r['images_per_second']:,.0f} | "
                     f"{r.get('launches_per_step', 0):.0f} | {peer['images_per_second']:,.0f} | "
                     f"{r['images_per_second'] / peer['images_per_second']:.2f}x |")
open(f"{out}/ratios.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
