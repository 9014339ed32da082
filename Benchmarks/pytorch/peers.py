"""PyTorch on the same models, batch sizes and step as `kiln bench`, for the side-by-side tables of
BENCHMARKS.md: a training step is forward, cross-entropy, backward and an SGD step with Nesterov momentum;
inference is a forward in eval mode under no_grad. One warm-up, then the median of the timed repeats.

    python3 Benchmarks/pytorch/peers.py [--device cpu|cuda] [--models lenet-bn,resnet18] [--json]

On CUDA it runs in FP32 (TF32 off for convolutions and matrix products).
"""
import argparse
import sys
from pathlib import Path

import torch
from torch import nn
import torch.nn.functional as F


class LeNetBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 6, 5, padding=2), nn.BatchNorm2d(6)
        self.conv2, self.bn2 = nn.Conv2d(6, 16, 5), nn.BatchNorm2d(16)
        self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        x = self.dropout(F.relu(self.fc1(x.flatten(1))))
        return self.fc3(F.relu(self.fc2(x)))


class BasicBlock(nn.Module):
    def __init__(self, inputs, outputs, stride):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False), nn.BatchNorm2d(outputs)
        self.conv2, self.bn2 = nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False), nn.BatchNorm2d(outputs)
        self.downsample = None
        if stride != 1 or inputs != outputs:
            self.downsample = nn.Sequential(nn.Conv2d(inputs, outputs, 1, stride, bias=False), nn.BatchNorm2d(outputs))

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet18Small(nn.Module):
    """ResNet-18 with the small-image stem (3x3 convolution, no max pooling), as Kiln's resnet18 at 32x32."""

    def __init__(self, classes=10):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64)
        layers, inputs = [], 64
        for outputs, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            layers.append(nn.Sequential(BasicBlock(inputs, outputs, stride), BasicBlock(outputs, outputs, 1)))
            inputs = outputs
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        x = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from peer_timing import per_step, print_records, records_for  # noqa: E402

MODELS = {"lenet-bn": (LeNetBN, (1, 28, 28), [64, 256]), "resnet18": (ResNet18Small, (3, 32, 32), [64, 128])}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default="lenet-bn,resnet18")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    records = []
    for name in args.models.split(","):
        build, shape, batches = MODELS[name]
        torch.manual_seed(1)
        model = build().to(device)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
        for batch in batches:
            x = torch.rand(batch, *shape, device=device)
            labels = torch.arange(batch, device=device) % 10

            def train():
                optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(model(x), labels).backward()
                optimizer.step()

            def infer():
                with torch.no_grad():
                    model(x)

            model.train()
            train_seconds = per_step(train, sync)
            model.eval()
            infer_seconds = per_step(infer, sync)
            records += records_for("pytorch", f"{device.type} (torch {torch.__version__}, {torch.get_num_threads()} threads)",
                                   name, batch, [("train", train_seconds), ("infer", infer_seconds)])
    print_records(records, args.json)


if __name__ == "__main__":
    main()
