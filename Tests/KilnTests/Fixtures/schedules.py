"""Learning rates (and one-cycle's momentum) of PyTorch's schedulers at every step, for ScheduleTests.

    python3 Tests/KilnTests/Fixtures/schedules.py   # writes schedules.json beside it

Each case steps its scheduler the way Kiln evaluates the schedule: per batch for cosine and one-cycle
(T_max and total_steps in steps), per epoch for StepLR, MultiStepLR and ExponentialLR (their rate then holds
for the epoch's steps). The warm-up is LinearLR(start_factor=1/W, total_iters=W-1) chained with the schedule.
"""
import json
from pathlib import Path

import torch


def rates(make, steps, steps_per_epoch=None, momentum=False):
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.1, momentum=0.9)
    scheduler = make(optimizer)
    lrs, momenta = [], []
    for step in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        momenta.append(optimizer.param_groups[0]["momentum"])
        optimizer.step()
        if steps_per_epoch is None or (step + 1) % steps_per_epoch == 0:
            scheduler.step()
    case = {"lr": lrs}
    if momentum:
        case["momentum"] = momenta
    return case


S, E = 7, 3  # steps per epoch, epochs
cases = {
    "cosine": rates(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=S * E), S * E),
    "onecycle": rates(lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=S * E), S * E, momentum=True),
    "step": rates(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.1), 5 * 3, steps_per_epoch=3),
    "milestones": rates(lambda o: torch.optim.lr_scheduler.MultiStepLR(o, milestones=[2, 4], gamma=0.5), 5 * 3, steps_per_epoch=3),
    "exponential": rates(lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.8), 4 * 2, steps_per_epoch=2),
    "warmup+cosine": rates(lambda o: torch.optim.lr_scheduler.ChainedScheduler([
        torch.optim.lr_scheduler.LinearLR(o, start_factor=1 / 5, end_factor=1, total_iters=4),
        torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=S * E)]), S * E),
}
Path(__file__).with_name("schedules.json").write_text(json.dumps({"torch": torch.__version__, "cases": cases}, indent=1) + "\n")
