"""The quick start model trained as the Faster R-CNN paper did: 4-step alternating training.

``Shapes/faster_rcnn_tiny_fpn.py`` trains the RPN and the detector together (approximate joint
training) for 1200 iterations. This config trains the same model on the same data, with the same
optimizer and LR schedule shape, in the paper's four steps (Ren et al. 2015, §3.2), 1200
iterations in all, from one command::

    python tools/train_net.py --config-file Shapes/faster_rcnn_tiny_fpn_alternating.py

1. ``1_rpn`` (20%): the RPN alone (the RoI heads do not run), the backbone from
   ``train.init_checkpoint``;
2. ``2_fast_rcnn`` (40%): a Fast R-CNN detector on step 1's proposals, computed on the fly by a
   frozen copy of step 1's backbone and RPN; its own backbone starts as step 1's did, so nothing
   is shared yet;
3. ``3_rpn_shared`` (20%): from step 2's detector, the backbone (the shared layers) frozen; only
   the RPN's own layers train;
4. ``4_fast_rcnn_shared`` (20%): the backbone and the RPN frozen; only the box head and the
   predictor train, on step 3's proposals.

Each step writes to ``<output_dir>/<step>/``; ``<output_dir>/model_final.pth`` is step 4's model, a
plain Faster R-CNN whose RPN and detector share one backbone, evaluated on shapes-val at the end.
``--resume`` continues in the step that was interrupted. ``train.max_iter=N`` rescales all four.

Deviations from the paper:

* there is no ImageNet model: the backbone trains from scratch, as in the quick start. "As step 1
  did" therefore means a fresh random initialization in step 2, and the final backbone is trained
  in step 2 only; step 2 gets the largest share for this reason (the paper: 80k / 40k / 80k / 40k
  iterations for the four steps). ``train.stages.1.init_from=1_rpn`` starts step 2 from step 1's
  backbone instead (trained separately all the same, but no longer from the same start as step 1);
* proposals are computed on the fly on each augmented training image, with the RPN's training
  top-k (500 pre-NMS, 300 post-NMS per image), not once over the training set;
* every step uses the quick start's optimizer and schedule, stretched to the step: SGD with LR
  0.02, a linear warmup over the first 8% of the step, x0.1 at 75% and x0.01 at 92% of the step
  (the paper: LR 0.001, then 0.0001 for the last quarter, no warmup);
* 8 images per batch in every step (the paper: 1 in the RPN steps, 2 in the Fast R-CNN steps);
* the frozen backbone's BatchNorm layers (steps 3 and 4) normalize with step 2's statistics (the
  paper's VGG16 has no BatchNorm).
"""

from .faster_rcnn_tiny_fpn import dataloader, lr_multiplier, model, optimizer, train

train.output_dir = "./output/shapes_faster_rcnn_tiny_fpn_alternating"
train.checkpointer.period = 100  # per step: a step of 240 iterations resumes from within
train.stages = [
    dict(name="1_rpn", share=0.2, train_mode="rpn", init_from="init_checkpoint"),
    dict(
        name="2_fast_rcnn",
        share=0.4,
        train_mode="detector",
        init_from="init_checkpoint",
        proposals_from="1_rpn",
    ),
    dict(name="3_rpn_shared", share=0.2, train_mode="rpn", init_from="previous", freeze=["backbone"]),
    dict(
        name="4_fast_rcnn_shared", share=0.2, train_mode="detector", init_from="previous", freeze=["backbone"]
    ),
]
