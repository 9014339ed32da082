"""Makes resnet18_torchvision.safetensors: torchvision's ResNet-18 built the usual way for 28×28 grey images
(`resnet18(num_classes=10)` with conv1 replaced by a 1-channel 7×7 stride-2 convolution; the max pooling
stays), trained briefly in PyTorch on Fashion-MNIST and saved with safetensors.torch.save_file in float16 (half
the size of float32, as pretrained weights are often published). PyTorch's accuracy, predictions and logits
on the first 1,000 test images, computed with exactly the float16 values the file holds, are in its metadata,
so Kiln's tests can check that Kiln's resnet18 with `--stem imagenet` evaluates it identically.

    python3 resnet18_torchvision.py                      # writes the fixture (torch, torchvision, safetensors, numpy)
    python3 resnet18_torchvision.py --check KILN.safetensors
                                                          # loads a state dict (e.g. written by Kiln) into torchvision's model
"""
import gzip
import json
import sys

import numpy as np
import torch
import torchvision
from safetensors.torch import load_file, save_file
from torch import nn

DATA = "/usr/share/datasets/fashion-mnist"


def idx(name):
    with gzip.open(f"{DATA}/{name}.gz") as f:
        data = f.read()
    rank = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(rank)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


def grey_resnet18():
    model = torchvision.models.resnet18(num_classes=10)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model


def images(split, count):
    prefix = "train" if split == "train" else "t10k"
    pixels = torch.tensor(idx(f"{prefix}-images-idx3-ubyte")[:count], dtype=torch.float32).unsqueeze(1) / 255
    return pixels, torch.tensor(idx(f"{prefix}-labels-idx1-ubyte")[:count], dtype=torch.int64)


def logits_of(model, pixels):
    with torch.no_grad():
        return torch.cat([model.eval()(pixels[i:i + 250]) for i in range(0, len(pixels), 250)])


if len(sys.argv) == 3 and sys.argv[1] == "--check":
    model = grey_resnet18()
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in load_file(sys.argv[2]).items()}, strict=True)
    pixels, labels = images("test", 10000)
    correct = int((logits_of(model, pixels).argmax(1) == labels).sum())
    print(f"{sys.argv[2]} loads into torchvision's ResNet-18: {correct / 100:.2f}% on the 10,000 test images")
    sys.exit(0)

torch.manual_seed(0)
torch.set_num_threads(2)
model = grey_resnet18()
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
pixels, labels = images("train", 12800)
model.train()
for step in range(200):
    batch = slice(64 * step, 64 * (step + 1))
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(pixels[batch]), labels[batch]).backward()
    optimizer.step()

# PyTorch's answers for the values the file holds: float16, read back into a float32 model.
half = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in half.items()})
pixels, labels = images("test", 1000)
logits = logits_of(model, pixels)
predictions = logits.argmax(1)
metadata = {"correct_of_first_1000": str(int((predictions == labels).sum())),
            "predictions_of_first_1000": json.dumps(predictions.tolist()),
            "logits_of_first_8": json.dumps(logits[:8].tolist()),
            "made_by": f"torch {torch.__version__}, torchvision {torchvision.__version__}"}
save_file(half, "resnet18_torchvision.safetensors", metadata=metadata)
print(f"PyTorch: {metadata['correct_of_first_1000']}/1000 correct; wrote resnet18_torchvision.safetensors")
