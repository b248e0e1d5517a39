"""SGD with momentum; norm layers get no weight decay. The front door sets ``params.model``."""

import torch

from rcnnzoo.config import LazyCall as L
from rcnnzoo.solver import get_default_optimizer_params

SGD = L(torch.optim.SGD)(
    params=L(get_default_optimizer_params)(weight_decay_norm=0.0),
    lr=0.02,
    momentum=0.9,
    weight_decay=1e-4,
)
