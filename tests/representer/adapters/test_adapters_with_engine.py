"""The adapters' output is what the engine explains: its reported logits are the model's own."""

import numpy as np
import pytest
import torch
import xgboost as xgb
from sklearn.datasets import load_digits

from representer import LJEConfig, Method, explain, fit
from representer.adapters import BoosterEmbedding, Embedding, extract_features

MARGIN_ATOL = 1e-5  # as in test_xgboost_booster: Θ†φ̃(x) = booster margin
DAMPING = 1e-3  # leaf one-hot columns sum to 1 per tree: the Hessian needs damping (MATH.md §7)


@pytest.mark.parametrize("embedding", list(Embedding))
def test_engine_reports_the_boosters_margin_on_digits(embedding):
    images, labels = load_digits(return_X_y=True)
    train_images, train_labels, test_images = images[:600], labels[:600], images[1500:1510]
    params = {
        "objective": "multi:softprob",
        "num_class": 10,
        "max_depth": 2,
        "seed": 0,
        "nthread": 1,
    }
    booster = xgb.train(params, xgb.DMatrix(train_images, label=train_labels), num_boost_round=5)
    model = BoosterEmbedding.from_booster(booster, embedding=embedding)
    state = fit(
        model.head, model.transform(train_images), train_labels, config=LJEConfig(damping=DAMPING)
    )
    explanations = explain(
        state, model.transform(train_images), model.transform(test_images), top_k=3
    )
    margins = booster.predict(xgb.DMatrix(test_images), output_margin=True)  # (m, 10)
    for explanation, margin in zip(explanations, margins, strict=False):
        np.testing.assert_allclose(explanation.logits, margin, atol=MARGIN_ATOL)
        assert explanation.predicted_class == int(margin.argmax())
        assert np.isclose(
            explanation.residual, explanation.model_output - explanation.sum_of_contributions
        )


def test_engine_reports_the_networks_logit():
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Linear(64, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    images, labels = load_digits(n_class=2, return_X_y=True)
    inputs = torch.tensor(images / 16.0, dtype=torch.float32)
    features, head = extract_features(network, "2", inputs, progress=False)
    state = fit(head, features[:300], labels[:300], method=Method.INFLUENCE)
    explanations = explain(state, features[:300], features[300:305], target=1, top_k=3)
    with torch.no_grad():
        logits = network(inputs[300:305]).double().numpy()[:, 0]
    np.testing.assert_allclose(
        [explanation.model_output for explanation in explanations], logits, atol=MARGIN_ATOL
    )
