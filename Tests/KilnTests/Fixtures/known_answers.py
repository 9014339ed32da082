"""Makes known_answers.json: values and gradients computed by PyTorch (float64, then rounded to float32) for
the ops whose host code mirrors its kernel, so that a formula shared wrongly by both backends still fails
KnownAnswerTests. Inputs come from a fixed seed; the file holds inputs and answers alike.

    python3 known_answers.py          # writes known_answers.json beside this script (needs torch)
"""
import json
import os

import torch
import torch.nn.functional as F

torch.manual_seed(20261201)
DOUBLE = torch.float64


def values(t):
    return [float(v) for v in t.detach().to(torch.float32).flatten().tolist()]


def uniform(shape, low, high):
    return (torch.rand(shape, dtype=DOUBLE) * (high - low) + low).to(torch.float32).to(DOUBLE)


def activations():
    # Random points plus the kinks themselves (0 and 6), where the conventions differ between libraries.
    x = torch.cat([uniform([40], -8, 8), torch.tensor([0.0, 6.0, -1e-3, 1e-3, 25.0, -25.0], dtype=DOUBLE)])
    dy = uniform(x.shape, -1, 1)
    functions = {
        "relu": F.relu,
        "leakyReLU(0.1)": lambda v: F.leaky_relu(v, 0.1),
        "elu(0.7)": lambda v: F.elu(v, 0.7),
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "softplus": F.softplus,
        "swish": F.silu,
        "relu6": F.relu6,
    }
    cases = []
    for name, f in functions.items():
        xi = x.clone().requires_grad_(True)
        y = f(xi)
        (dx,) = torch.autograd.grad(y, xi, dy)
        cases.append({"activation": name, "x": values(x), "dy": values(dy), "y": values(y), "dx": values(dx)})
    return cases


def lrn():
    cases = []
    for size, alpha, beta, k in [(5, 1e-4, 0.75, 2.0), (3, 0.5, 0.6, 1.0), (2, 2.0, 1.2, 0.5), (4, 1.0, 0.75, 1.5)]:
        x = uniform([2, 7, 3, 3], -2, 2).requires_grad_(True)
        dy = uniform([2, 7, 3, 3], -1, 1)
        y = F.local_response_norm(x, size, alpha=alpha, beta=beta, k=k)
        (dx,) = torch.autograd.grad(y, x, dy)
        cases.append({"size": size, "alpha": alpha, "beta": beta, "k": k, "shape": list(x.shape),
                      "x": values(x), "dy": values(dy), "y": values(y), "dx": values(dx)})
    return cases


def losses():
    cases = []
    logits = uniform([5, 7], -4, 4)
    labels = torch.tensor([3, 0, 6, 2, 3])
    soft = torch.softmax(uniform([5, 7], -2, 2), dim=1)
    for name, target, f in [
        ("cross-entropy labels", labels, lambda z: F.cross_entropy(z, labels)),
        ("cross-entropy probabilities", soft, lambda z: F.cross_entropy(z, soft)),
        ("nll", labels, lambda z: F.nll_loss(z, labels)),
    ]:
        z = (torch.log_softmax(logits, dim=1) if name == "nll" else logits).clone().requires_grad_(True)
        loss = f(z)
        (grad,) = torch.autograd.grad(loss, z)
        cases.append({"loss": name, "shape": list(z.shape), "input": values(z), "target": values(target.to(DOUBLE)),
                      "value": float(loss.detach()), "gradient": values(grad)})
    prediction = uniform([4, 6], -3, 3)
    regression = uniform([4, 6], -3, 3)
    probabilities = uniform([4, 6], 0, 1)
    for name, target, f in [("mse", regression, F.mse_loss),
                            ("bce-with-logits", probabilities, F.binary_cross_entropy_with_logits)]:
        z = prediction.clone().requires_grad_(True)
        loss = f(z, target)
        (grad,) = torch.autograd.grad(loss, z)
        cases.append({"loss": name, "shape": list(z.shape), "input": values(z), "target": values(target),
                      "value": float(loss.detach()), "gradient": values(grad)})
    for name, f in [("softmax", lambda z: torch.softmax(z, 1)), ("log-softmax", lambda z: torch.log_softmax(z, 1))]:
        z = logits.clone().requires_grad_(True)
        dy = uniform([5, 7], -1, 1)
        y = f(z)
        (dx,) = torch.autograd.grad(y, z, dy)
        cases.append({"loss": name, "shape": [5, 7], "input": values(z), "target": values(dy), "value": 0.0,
                      "output": values(y), "gradient": values(dx)})
    return cases


def optimizers():
    """Five steps of each rule with a new gradient every step, plain, with L2 weight decay, and with L1 as
    well (Kiln's definition: g = ∇ + l1·sign(p) + wd·p, or for AdamW p −= lr·wd·p)."""
    rules = {
        "sgd": lambda p, wd: torch.optim.SGD(p, lr=0.1, weight_decay=wd),
        "momentum": lambda p, wd: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=wd),
        "nesterov": lambda p, wd: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=wd),
        "adagrad": lambda p, wd: torch.optim.Adagrad(p, lr=0.1, eps=1e-10, weight_decay=wd),
        "adadelta": lambda p, wd: torch.optim.Adadelta(p, lr=1.0, rho=0.9, eps=1e-6, weight_decay=wd),
        "rmsprop": lambda p, wd: torch.optim.RMSprop(p, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=wd),
        "rmsprop-momentum": lambda p, wd: torch.optim.RMSprop(p, lr=0.01, alpha=0.99, eps=1e-8, momentum=0.5, weight_decay=wd),
        "adam": lambda p, wd: torch.optim.Adam(p, lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd),
        "adamw": lambda p, wd: torch.optim.AdamW(p, lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd),
    }
    learning_rates = {"sgd": 0.1, "momentum": 0.1, "nesterov": 0.1, "adagrad": 0.1, "adadelta": 1.0, "rmsprop": 0.01,
                      "rmsprop-momentum": 0.01, "adam": 0.01, "adamw": 0.01}
    cases = []
    start = uniform([13], -1, 1)
    gradients = [uniform([13], -1, 1) for _ in range(5)]
    for name, make in rules.items():
        for wd, l1 in [(0.0, 0.0), (0.05, 0.0), (0.05, 0.01)]:
            p = start.clone().requires_grad_(True)
            optimizer = make([p], wd)
            for g in gradients:
                p.grad = g.clone() + l1 * torch.sign(p.detach())
                optimizer.step()
            cases.append({"rule": name, "lr": learning_rates[name], "weightDecay": wd, "l1": l1, "start": values(start),
                          "gradients": [values(g) for g in gradients], "final": values(p)})
    return cases


answers = {"activations": activations(), "lrn": lrn(), "losses": losses(), "optimizers": optimizers()}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "known_answers.json")
with open(path, "w") as f:
    json.dump(answers, f, indent=None, separators=(",", ":"))
    f.write("\n")
print(f"wrote {path}")
