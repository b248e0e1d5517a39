"""Evaluation: run a model over a dataset and score its detections (COCO AP, PASCAL VOC AP).

Registered evaluators live in :data:`EVALUATOR_REGISTRY` ("COCOEvaluator",
"PascalVOCDetectionEvaluator", "ProposalEvaluator"). All metrics are fractions in [0, 1].
"""

from .coco_evaluation import COCOEvaluator, convert_to_coco_dict, instances_to_coco_json, summarize_coco_eval
from .evaluator import (
    EVALUATOR_REGISTRY,
    DatasetEvaluator,
    DatasetEvaluators,
    flatten_results_dict,
    format_results_table,
    inference_context,
    inference_on_dataset,
    print_csv_format,
)
from .pascal_voc_evaluation import PascalVOCDetectionEvaluator, voc_ap, voc_eval_class
from .proposal_evaluation import ProposalEvaluator, match_proposals_to_ground_truth, recall_at_thresholds

__all__ = [
    "EVALUATOR_REGISTRY",
    "COCOEvaluator",
    "DatasetEvaluator",
    "DatasetEvaluators",
    "PascalVOCDetectionEvaluator",
    "ProposalEvaluator",
    "convert_to_coco_dict",
    "flatten_results_dict",
    "format_results_table",
    "inference_context",
    "inference_on_dataset",
    "instances_to_coco_json",
    "match_proposals_to_ground_truth",
    "print_csv_format",
    "recall_at_thresholds",
    "summarize_coco_eval",
    "voc_ap",
    "voc_eval_class",
]
