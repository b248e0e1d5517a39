"""Selective search proposals on the shapes val set, scored by their recall (AR@100/300/1000).

Nothing to train: the model is selective search alone (no backbone, no parameters). Evaluate with::

    python tools/train_net.py --config-file Classic/selective_search_shapes.py --eval-only

and save its proposals for training a Fast R-CNN with ``PrecomputedProposals``::

    python tools/precompute_proposals.py --config-file Classic/selective_search_shapes.py \\
        --dataset shapes_train --num-workers 8

Selective search runs on the test-time resized image (short side 256), "fast" mode: about 0.25 s
per image on one CPU core.
"""

from fvcore.common.param_scheduler import ConstantParamScheduler

from rcnnzoo.config import LazyCall as L
from rcnnzoo.evaluation import ProposalEvaluator
from rcnnzoo.modeling import ProposalNetwork, SelectiveSearch

from ..common.data.shapes import dataloader
from ..common.optim import SGD as optimizer
from ..common.train import train

model = L(ProposalNetwork)(
    backbone=None,
    proposal_generator=L(SelectiveSearch)(mode="fast", max_proposals=(2000, 2000), min_size=0.0),
    input_format="BGR",
)

dataloader.evaluator = L(ProposalEvaluator)(dataset_name="shapes_val", limits=(100, 300, 1000))

# A training section like every config's, though there is nothing to train.
train.max_iter = 1
lr_multiplier = L(ConstantParamScheduler)(value=1.0)
# After --eval-only, a few val images with their 20 best proposals are drawn in output_dir/predictions.
train.output_dir = "./output/shapes_selective_search"
train.device = "cpu"
train.seed = 0
