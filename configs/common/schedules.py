"""Step LR schedules with linear warmup, as multipliers of the optimizer's base LR."""

from fvcore.common.param_scheduler import MultiStepParamScheduler

from rcnnzoo.config import LazyCall as L
from rcnnzoo.solver import WarmupParamScheduler


def step_schedule(max_iter: int, steps: tuple[float, ...] = (0.667, 0.889), warmup_iter: int = 1000):
    """LR x1, then x0.1 and x0.01 at the given fractions of ``max_iter`` (the "1x" shape)."""
    milestones = [int(max_iter * s) for s in steps]
    return L(WarmupParamScheduler)(
        scheduler=L(MultiStepParamScheduler)(
            values=[1.0 * 0.1**i for i in range(len(milestones) + 1)],
            milestones=milestones,
            num_updates=max_iter,
        ),
        warmup_length=warmup_iter / max_iter,
        warmup_method="linear",
        warmup_factor=0.001,
    )


# detectron2's COCO schedules at batch 16: 1x = 90k iterations, 3x = 270k
lr_multiplier_1x = step_schedule(90000, steps=(60000 / 90000, 80000 / 90000))
lr_multiplier_3x = step_schedule(270000, steps=(210000 / 270000, 250000 / 270000))
