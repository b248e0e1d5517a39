"""Dataset checks before training: what a dataset holds, and what in it would quietly hurt training.

:func:`check_dataset_dicts` looks at one dataset's dicts; :func:`check_datasets` at the datasets a
config trains (or tests) on, with the model's class count and anchors. Both return
:class:`DatasetReport` s: counts (images, instances per class, images without objects), problems
(each naming the image file, the json file and the annotation id) and anchor coverage.

Problems that are errors (``report.ok`` is False):

* ``missing_image``, ``unreadable_image``, ``image_size_mismatch`` (decoded size differs from the dict's);
* ``degenerate_box`` (width or height <= 0, non-finite or malformed), ``box_outside_image``
  (beyond a 1 px tolerance), ``wrong_layout`` (XYXY written where XYWH is expected, or the reverse);
  with ``bad_boxes="drop"`` or ``"clip"`` (what :func:`~rcnnzoo.data.get_detection_dataset_dicts`
  then does with them) these three are warnings instead;
* ``unknown_category`` (a ``category_id`` outside the metadata's ``thing_classes``),
  ``num_classes_mismatch`` (the model's ``num_classes`` vs ``len(thing_classes)``),
  ``class_mismatch`` (datasets trained together with different ``thing_classes``),
  ``load_failed`` (the dataset could not be loaded at all).

Warnings: ``low_anchor_coverage`` (fewer than half the boxes of a size bucket have an anchor with
IoU >= 0.5 at the training scale).

The modules, from the bottom up:

* :mod:`.report`: :class:`Problem` and :class:`DatasetReport`;
* :mod:`.annotations`: every annotation of the dicts as flat arrays, which the checks below share;
* :mod:`.boxes`: the bad boxes, and :func:`handle_bad_boxes`, the loading policy for them;
* :mod:`.categories`: unknown category ids, and :func:`check_category_ids`;
* :mod:`.images`: missing, unreadable or wrongly sized image files;
* :mod:`.anchors`: anchor coverage by box size;
* :mod:`.dataset`: :func:`check_dataset_dicts`, all of the above on one dataset;
* :mod:`.config`: :func:`check_datasets`, the datasets of a config.
"""

from .anchors import LOW_COVERAGE, SIZE_BUCKETS
from .boxes import BAD_BOX_MODES, BOX_TOLERANCE, handle_bad_boxes
from .categories import check_category_ids
from .config import check_datasets
from .dataset import check_dataset_dicts
from .images import AUTO_DECODE_LIMIT, READ_IMAGE_MODES
from .report import COVERAGE_IOU, DatasetReport, Problem

__all__ = [
    "AUTO_DECODE_LIMIT",
    "BAD_BOX_MODES",
    "BOX_TOLERANCE",
    "COVERAGE_IOU",
    "DatasetReport",
    "LOW_COVERAGE",
    "Problem",
    "READ_IMAGE_MODES",
    "SIZE_BUCKETS",
    "check_category_ids",
    "check_dataset_dicts",
    "check_datasets",
    "handle_bad_boxes",
]
