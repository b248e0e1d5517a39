"""tools/train_net.py: refusals that need no training. Training, evaluating, predicting and
fine-tuning on a user's own COCO dataset run in tests/tools/test_readme_own_data.py, from the
README's own commands."""

from __future__ import annotations

import pytest

from rcnnzoo.tools import train_net


def test_mismatched_image_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match="image_format"):
        train_net.main(
            [
                "--config-file=Shapes/faster_rcnn_tiny_fpn.py",
                "--eval-only",
                "dataloader.test.mapper.image_format='RGB'",
                f"train.output_dir={tmp_path}",
            ]
        )


def test_missing_config_names_candidates():
    with pytest.raises(FileNotFoundError, match="faster_rcnn_tiny_fpn"):
        train_net.main(["--config-file=Shapes/faster_rcnn_tiny_fp.py"])
