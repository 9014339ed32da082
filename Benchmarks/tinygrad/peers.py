"""tinygrad on the same network, batch sizes and step as `kiln bench`, on its OpenCL backend (DEV=CL, which on
a machine without a GPU is POCL on the CPU, the device Kiln's cl:0:0 uses). A training step is forward,
cross-entropy, backward and an SGD step with Nesterov momentum, captured once by TinyJit and replayed;
inference is a jitted forward with training off. Timed as `kiln bench` times its steps (peer_timing.py), after
the jit's two capture calls.

    pip install tinygrad
    DEV=CL python3 Benchmarks/tinygrad/peers.py [--models lenet-bn] [--batches 64,256] [--json]
    DEV=CL python3 Benchmarks/tinygrad/peers.py --first-step   # one step, then "first step done" (first_step.py)
"""
import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("DEV", "CL")

from tinygrad import Context, Device, Tensor, TinyJit, nn  # noqa: E402
from importlib.metadata import version  # noqa: E402


class LeNetBN:
    """Kiln's lenet-bn: two 5x5 convolutions with batch norm, ReLU and 2x2 max pooling, then 120, 84, 10."""

    def __init__(self):
        self.conv1, self.bn1 = nn.Conv2d(1, 6, 5, padding=2), nn.BatchNorm2d(6)
        self.conv2, self.bn2 = nn.Conv2d(6, 16, 5), nn.BatchNorm2d(16)
        self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def __call__(self, x):
        x = self.bn1(self.conv1(x)).relu().max_pool2d(2)
        x = self.bn2(self.conv2(x)).relu().max_pool2d(2)
        x = self.fc1(x.flatten(1)).relu().dropout(0.5)
        return self.fc3(self.fc2(x).relu())


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from peer_timing import per_step, print_records, records_for  # noqa: E402

MODELS = {"lenet-bn": (LeNetBN, (1, 28, 28), [64, 256])}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="lenet-bn")
    parser.add_argument("--batches", help="comma-separated batch sizes (default: 64,256 as kiln bench)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--first-step", action="store_true",
                        help="run one training step of the first model at the first batch size, wait for it, say so and stop")
    args = parser.parse_args()
    records = []
    for name in args.models.split(","):
        build, shape, batches = MODELS[name]
        if args.batches:
            batches = [int(b) for b in args.batches.split(",")]
        Tensor.manual_seed(1)
        model = build()
        parameters = nn.state.get_parameters(model)
        optimizer = nn.optim.SGD(parameters, lr=0.01, momentum=0.9, nesterov=True)
        for batch in batches:
            x = Tensor.rand(batch, *shape).contiguous().realize()
            labels = Tensor([i % 10 for i in range(batch)]).realize()

            @TinyJit
            def train(x, labels):
                with Context(TRAINING=1):
                    optimizer.zero_grad()
                    loss = model(x).sparse_categorical_crossentropy(labels)
                    loss.backward()
                    optimizer.step()
                    return loss.realize()

            @TinyJit
            def infer(x):
                return model(x).realize()

            if args.first_step:
                train(x, labels)
                Device[Device.DEFAULT].synchronize()
                print("first step done", flush=True)
                return

            for _ in range(2):  # TinyJit captures on its second call
                train(x, labels)
                infer(x)
            sync = Device[Device.DEFAULT].synchronize
            train_seconds = per_step(lambda: train(x, labels), sync)
            infer_seconds = per_step(lambda: infer(x), sync)
            records += records_for("tinygrad", f"{Device.DEFAULT} (tinygrad {version('tinygrad')})", name, batch,
                                   [("train", train_seconds), ("infer", infer_seconds)])
    print_records(records, args.json)


if __name__ == "__main__":
    main()
