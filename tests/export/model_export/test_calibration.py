"""The demo weights' pseudo-labels of the calibration images (model_export.demo needs PyTorch)."""

from __future__ import annotations

import numpy as np
import pytest

from model_export.demo import cluster_labels

pytestmark = pytest.mark.export


def test_cluster_labels_group_look_alike_images() -> None:
    rng = np.random.default_rng(0)
    quiet = rng.normal(0, 0.01, (6, 1, 192, 64)).astype(np.float32)
    loud = rng.normal(5, 0.01, (6, 1, 192, 64)).astype(np.float32)
    labels = cluster_labels(np.concatenate([quiet, loud]), 2, seed=0)
    assert len(set(labels[:6].tolist())) == 1 and len(set(labels[6:].tolist())) == 1
    assert labels[0] != labels[6]
    assert np.array_equal(labels, cluster_labels(np.concatenate([quiet, loud]), 2, seed=0))
