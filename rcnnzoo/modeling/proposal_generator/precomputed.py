"""Proposals read from a file (Fast R-CNN, SPPnet and R-CNN on selective search boxes).

The file is attached to the dataset (``get_detection_dataset_dicts(..., proposal_files=[...])``),
the :class:`~rcnnzoo.data.DatasetMapper` resizes and flips the proposals with the image and puts
them in each input as ``"proposals"``; this generator only picks them up.
"""

from __future__ import annotations

import torch
from torch import nn

from rcnnzoo.structures import ImageList, Instances

from .build import PROPOSAL_GENERATOR_REGISTRY

__all__ = ["PrecomputedProposals"]

_HOW_TO_ATTACH = (
    "attach a proposal file to the dataset, e.g. in the config "
    "dataloader.train.dataset.proposal_files=['proposals_<dataset>.npz'] (and the same for "
    "dataloader.test), made with tools/precompute_proposals.py; the DatasetMapper then adds them"
)


@PROPOSAL_GENERATOR_REGISTRY.register()
class PrecomputedProposals(nn.Module):
    """The proposals the inputs carry (``batched_inputs[i]["proposals"]``), best ``topk`` of each.

    No losses and no parameters: the rest of the model trains as usual.

    Args:
        topk: (train, test) number of proposals kept per image, by ``objectness_logits``
            (the paper's Fast R-CNN used 2000 selective search boxes per image in both).
    """

    # The meta-architecture passes batched_inputs=... to such generators.
    uses_batched_inputs = True
    # The backbone's features are not used.
    needs_features = False

    def __init__(self, *, topk: tuple[int, int] = (2000, 2000)):
        super().__init__()
        self.topk = {True: int(topk[0]), False: int(topk[1])}

    def extra_repr(self) -> str:
        return f"topk=({self.topk[True]}, {self.topk[False]})"

    def forward(
        self,
        images: ImageList,
        features: dict[str, torch.Tensor] | None,
        gt_instances: list[Instances] | None = None,
        *,
        batched_inputs: list[dict],
    ) -> tuple[list[Instances], dict[str, torch.Tensor]]:
        """
        Args:
            images: the padded batch (for the image sizes and the device).
            features, gt_instances: unused.
            batched_inputs: each with ``"proposals"``: Instances(proposal_boxes: Boxes[P],
                objectness_logits: Tensor[P]) in the frame of its (resized) image.
        Returns:
            proposals: per image, the ``topk`` best, sorted by score; losses: {}.

        Raises:
            KeyError: an input without ``"proposals"`` (the message says how to attach them).
            ValueError: proposals whose image size differs from their image's.
        """
        proposals = []
        k = self.topk[self.training]
        for i, (inputs, size) in enumerate(zip(batched_inputs, images.image_sizes)):
            if "proposals" not in inputs:
                name = inputs.get("file_name", f"input {i}")
                raise KeyError(f"PrecomputedProposals: {name} has no 'proposals'; {_HOW_TO_ATTACH}")
            props = inputs["proposals"]
            if tuple(props.image_size) != tuple(size):
                raise ValueError(
                    f"The proposals of {inputs.get('file_name', f'input {i}')} are for an image of "
                    f"{props.image_size} but the image is {tuple(size)}; they must be in the resized "
                    "image's frame (the DatasetMapper puts them there)"
                )
            order = torch.sort(props.objectness_logits, descending=True, stable=True).indices[:k]
            proposals.append(props[order].to(images.device))
        return proposals, {}
