"""The quick start model trained as the Faster R-CNN paper did: 4-step alternating training.

``Shapes/faster_rcnn_tiny_fpn.py`` trains the RPN and the detector together (approximate joint
training). This config trains the same model on the same data, with the same optimizer and LR
schedule shape, in the paper's four steps (Ren et al. 2015, §3.2), 2400 iterations in all, from
one command::

    python tools/train_net.py --config-file Shapes/faster_rcnn_tiny_fpn_alternating.py

Compare it with joint training for as many iterations (``Shapes/faster_rcnn_tiny_fpn.py
train.max_iter=2400``). Measured on 2 CPU cores, shapes-val bbox AP50 / AP: joint 0.933 / 0.736,
this schedule 0.884 / 0.661 (about 12 minutes).

1. ``1_rpn`` (15%): the RPN alone (the RoI heads do not run), the backbone from
   ``train.init_checkpoint`` (none here: from scratch);
2. ``2_fast_rcnn`` (65%): a Fast R-CNN detector on step 1's proposals, computed on the fly by a
   frozen copy of step 1's backbone and RPN; its own backbone starts from step 1's (see below);
3. ``3_rpn_shared`` (10%): from step 2's detector, the backbone (the shared layers) frozen; only
   the RPN's own layers train;
4. ``4_fast_rcnn_shared`` (10%): the backbone and the RPN frozen; only the box head and the
   predictor train, on step 3's proposals.

Each step writes to ``<output_dir>/<step>/``; ``<output_dir>/model_final.pth`` is step 4's model, a
plain Faster R-CNN whose RPN and detector share one backbone, evaluated on shapes-val at the end.
``--resume`` continues in the step that was interrupted. ``train.max_iter=N`` rescales all four.

Deviations from the paper:

* there is no ImageNet model: the backbone trains from scratch, as in the quick start. In the
  paper, steps 1 and 2 both start from the ImageNet network, so that nothing is shared before
  step 3; starting step 2 from scratch here would leave the final backbone with step 2's
  iterations alone (AP50 0.40 at 1200 iterations in all), so step 2 starts from step 1's backbone,
  the only trained network there is (``train.stages.1.init_from="init_checkpoint"`` gives the
  paper's rule). The two backbones still train separately: step 2's is a copy, and step 1's RPN
  proposes with its own, frozen;
* the shares: the paper trains 80k / 40k / 80k / 40k iterations; here step 2 gets most of them,
  because from scratch the shared layers learn only in steps 1 and 2. Measured at 1200
  iterations in all, bbox AP50: 15/65/10/10 %: 0.773; 30/45/15/10 %: 0.745; 25/40/25/10 %:
  0.690; 20/40/20/20 %: 0.705;
* proposals are computed on the fly on each augmented training image, with the RPN's training
  top-k (500 pre-NMS, 300 post-NMS per image), not once over the training set;
* every step uses the quick start's optimizer and schedule, stretched to the step: AdamW with LR
  2e-3, a linear warmup over the first 8% of the step, x0.1 at 75% and x0.01 at 92% of the step
  (the paper: SGD, LR 0.001, then 0.0001 for the last quarter, no warmup);
* 8 images per batch in every step (the paper: 1 in the RPN steps, 2 in the Fast R-CNN steps);
* the frozen backbone's BatchNorm layers (steps 3 and 4) normalize with step 2's statistics (the
  paper's VGG16 has no BatchNorm).
"""

from .faster_rcnn_tiny_fpn import dataloader, lr_multiplier, model, optimizer, train

train.output_dir = "./output/shapes_faster_rcnn_tiny_fpn_alternating"
train.max_iter = 2400
train.checkpointer.period = 100  # per step: a step of 240 iterations resumes from within
train.stages = [
    dict(name="1_rpn", share=0.15, train_mode="rpn", init_from="init_checkpoint"),
    dict(name="2_fast_rcnn", share=0.65, train_mode="detector", init_from="1_rpn", proposals_from="1_rpn"),
    dict(name="3_rpn_shared", share=0.1, train_mode="rpn", init_from="previous", freeze=["backbone"]),
    dict(
        name="4_fast_rcnn_shared", share=0.1, train_mode="detector", init_from="previous", freeze=["backbone"]
    ),
]
