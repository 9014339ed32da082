"""Makes lenet_bn_pytorch.safetensors: LeNet-BN trained briefly in PyTorch on Fashion-MNIST and saved with
safetensors.torch.save_file, with PyTorch's own accuracy and logits in the metadata, so Kiln's tests can
check that Kiln evaluates it identically.

    python3 lenet_bn_pytorch.py                      # writes the fixture (needs torch, safetensors, numpy)
    python3 lenet_bn_pytorch.py --check KILN.safetensors
                                                      # loads a checkpoint written by Kiln into PyTorch
"""
import gzip
import json
import sys

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

DATA = "/usr/share/datasets/fashion-mnist"


def idx(name):
    with gzip.open(f"{DATA}/{name}.gz") as f:
        data = f.read()
    rank = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(rank)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


class LeNetBN(nn.Module):
    """The module tree Kiln's lenet-bn mirrors: the same names, shapes and order."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        x = torch.max_pool2d(torch.relu(self.bn2(self.conv2(x))), 2)
        x = self.dropout(torch.relu(self.fc1(x.flatten(1))))
        return self.fc3(torch.relu(self.fc2(x)))


def test_images(count):
    images = torch.tensor(idx("t10k-images-idx3-ubyte")[:count], dtype=torch.float32).unsqueeze(1) / 255
    labels = torch.tensor(idx("t10k-labels-idx1-ubyte")[:count], dtype=torch.int64)
    return images, labels


def accuracy(model, count=1000):
    images, labels = test_images(count)
    with torch.no_grad():
        logits = model.eval()(images)
    return int((logits.argmax(1) == labels).sum()), logits


if len(sys.argv) == 3 and sys.argv[1] == "--check":
    model = LeNetBN()
    model.load_state_dict(load_file(sys.argv[2]), strict=True)
    correct, _ = accuracy(model, 10000)
    print(f"{sys.argv[2]} loads into PyTorch: {correct / 100:.2f}% on the 10,000 test images")
    sys.exit(0)

torch.manual_seed(0)
model = LeNetBN()
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
images = torch.tensor(idx("train-images-idx3-ubyte")[:12800], dtype=torch.float32).unsqueeze(1) / 255
labels = torch.tensor(idx("train-labels-idx1-ubyte")[:12800], dtype=torch.int64)
model.train()
for step in range(200):
    batch = slice(64 * step, 64 * (step + 1))
    optimizer.zero_grad()
    loss = nn.functional.cross_entropy(model(images[batch]), labels[batch])
    loss.backward()
    optimizer.step()
correct, logits = accuracy(model)
metadata = {"correct_of_first_1000": str(correct), "logits_of_first_8": json.dumps(logits[:8].tolist()),
            "made_by": f"torch {torch.__version__}"}
save_file(model.state_dict(), "lenet_bn_pytorch.safetensors", metadata=metadata)
print(f"PyTorch: {correct}/1000 correct; wrote lenet_bn_pytorch.safetensors")
