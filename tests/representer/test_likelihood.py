"""Link functions and target scores (MATH.md §1, §5)."""

import numpy as np
import torch

from representer.likelihood import (
    one_hot_targets,
    output_probabilities,
    predicted_class_from_logits,
    target_scores,
)


def test_sigmoid_for_one_output_softmax_for_several():
    logits = torch.tensor([[0.0], [2.0]], dtype=torch.float64)
    np.testing.assert_allclose(
        output_probabilities(logits).numpy()[:, 0], [0.5, 1 / (1 + np.exp(-2.0))]
    )
    logits = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    expected = np.exp([1.0, 2.0, 3.0]) / np.exp([1.0, 2.0, 3.0]).sum()
    np.testing.assert_allclose(output_probabilities(logits).numpy()[0], expected)


def test_targets_make_residuals():
    labels = torch.tensor([1, 0])
    np.testing.assert_array_equal(one_hot_targets(labels, 1).numpy(), [[1.0], [0.0]])
    np.testing.assert_array_equal(one_hot_targets(labels, 3).numpy(), [[0, 1, 0], [1, 0, 0]])


def test_binary_class_zero_scores_minus_the_logit():
    logits = np.array([[1.5], [-0.5]])
    np.testing.assert_array_equal(predicted_class_from_logits(logits), [1, 0])
    np.testing.assert_array_equal(target_scores(logits, np.array([1, 1])), [1.5, -0.5])
    np.testing.assert_array_equal(target_scores(logits, np.array([0, 0])), [-1.5, 0.5])
    multi = np.array([[0.1, 0.7, 0.2]])
    assert (
        predicted_class_from_logits(multi)[0] == 1 and target_scores(multi, np.array([2]))[0] == 0.2
    )
