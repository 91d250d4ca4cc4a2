"""The torch adapter: features @ W.T + b reproduces the network's logits (MATH.md §1)."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from representer import InvalidInputError
from representer.adapters import extract_features, head_from_linear

# float32 forward pass vs float64 head evaluation of the same numbers.
LOGIT_ATOL = 1e-5
NUM_ROWS = 37  # not a multiple of any batch size below, so the last batch is short


class SmallCNN(nn.Module):
    """conv -> relu -> pool -> flatten -> Linear(., 16) -> relu -> Linear(16, k)."""

    def __init__(self, num_outputs: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(4 * 4 * 4, 16),
            nn.ReLU(),
            nn.Dropout(0.5),  # only eval mode makes the output deterministic
        )
        self.classifier = nn.Linear(16, num_outputs)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(images))


def _model(num_outputs: int) -> SmallCNN:
    torch.manual_seed(num_outputs)
    return SmallCNN(num_outputs)


def _images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(NUM_ROWS, 1, 8, 8, generator=generator)


def _logits(model: nn.Module, images: torch.Tensor) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(images).double().numpy()


@pytest.mark.parametrize("num_outputs", [1, 2, 10])
def test_head_reproduces_logits_from_a_dataloader_of_pairs(num_outputs):
    model = _model(num_outputs)
    images = _images()
    labels = torch.zeros(NUM_ROWS, dtype=torch.long)
    loader = DataLoader(TensorDataset(images, labels), batch_size=8, shuffle=False)
    features, head = extract_features(model, "classifier", loader, progress=False)
    assert features.dtype == np.float32 and features.shape == (NUM_ROWS, 16)
    assert head.num_outputs == num_outputs and head.is_binary == (num_outputs == 1)
    np.testing.assert_allclose(head.logits(features), _logits(model, images), atol=LOGIT_ATOL)


@pytest.mark.parametrize("num_outputs", [1, 10])
def test_head_reproduces_logits_from_a_bare_tensor_and_an_array(num_outputs):
    model = _model(num_outputs)
    images = _images()
    expected = _logits(model, images)
    for data in (images, images.numpy().astype(np.float64)):
        features, head = extract_features(model, "classifier", data, batch_size=5, progress=False)
        np.testing.assert_allclose(head.logits(features), expected, atol=LOGIT_ATOL)


def test_dict_batches_use_the_input_key():
    model = _model(3)
    images = _images()
    batches = [
        {"input": images[start : start + 10], "label": None} for start in range(0, NUM_ROWS, 10)
    ]
    loader = DataLoader(batches, batch_size=None)
    features, head = extract_features(model, "classifier", loader, progress=False)
    np.testing.assert_allclose(head.logits(features), _logits(model, images), atol=LOGIT_ATOL)


def test_features_do_not_depend_on_the_batch_size():
    model = _model(4)
    images = _images()
    reference, _ = extract_features(
        model, "classifier", images, batch_size=NUM_ROWS, progress=False
    )
    for batch_size in (1, 4, 16):
        features, _ = extract_features(
            model, "classifier", images, batch_size=batch_size, progress=False
        )
        np.testing.assert_allclose(features, reference, atol=LOGIT_ATOL)


def test_features_are_the_hidden_layer_of_the_network():
    model = _model(2)
    images = _images()
    features, _ = extract_features(model, "classifier", images, progress=False)
    with torch.no_grad():
        model.eval()
        hidden = model.features(images).numpy()
    np.testing.assert_allclose(features, hidden, atol=LOGIT_ATOL)
    assert np.all(features >= 0)  # after a ReLU


@pytest.mark.parametrize("training", [True, False])
def test_training_flag_is_restored(training):
    model = _model(2)
    model.train(training)
    model.features[1].train(not training)  # a mixed state survives too
    extract_features(model, "classifier", _images(), progress=False)
    assert model.training == training and model.classifier.training == training
    assert model.features[1].training == (not training)


def test_head_from_linear_without_bias_has_zero_bias():
    linear = nn.Linear(5, 3, bias=False)
    head = head_from_linear(linear)
    np.testing.assert_array_equal(head.bias, np.zeros(3))
    np.testing.assert_array_equal(head.weights, linear.weight.detach().double().numpy())


class SequenceHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.out = nn.Linear(4, 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.out(tokens)  # (n, s, 4) -> (n, s, 2): not one vector per row


@pytest.mark.parametrize(
    ("module", "layer", "data", "kwargs", "argument"),
    [
        (_model(2), "features.0", _images(), {}, "layer"),  # a Conv2d
        (_model(2), "nope", _images(), {}, "layer"),
        (_model(2), "classifier", torch.empty(0, 1, 8, 8), {}, "data"),
        (_model(2), "classifier", [[1.0]], {}, "data"),
        (_model(2), "classifier", DataLoader(TensorDataset(torch.empty(0, 1, 8, 8))), {}, "data"),
        (_model(2), "classifier", _images(), {"device": "cuda:7"}, "device"),
        (_model(2), "classifier", _images(), {"device": "not-a-device"}, "device"),
        (_model(2), "classifier", _images(), {"batch_size": 0}, "batch_size"),
        ("not a module", "classifier", _images(), {}, "module"),
        (SequenceHead(), "out", torch.randn(3, 5, 4), {}, "layer"),
    ],
)
def test_validation_errors_name_the_argument(module, layer, data, kwargs, argument):
    with pytest.raises(InvalidInputError) as error:
        extract_features(module, layer, data, progress=False, **kwargs)
    assert error.value.argument == argument
    assert argument in str(error.value) or argument == "data"


def test_module_split_across_devices_is_refused_and_left_alone():
    model = _model(2)
    model.features[0].to("meta")  # parameters on two devices
    with pytest.raises(InvalidInputError) as error:
        extract_features(model, "classifier", _images(), progress=False)
    assert error.value.argument == "module"
    assert (
        model.classifier.weight.device.type == "cpu"
        and model.features[0].weight.device.type == "meta"
    )


def test_unknown_layer_error_lists_the_linear_layers():
    with pytest.raises(InvalidInputError, match=r"features\.4.*classifier"):
        extract_features(_model(2), "features.1", _images(), progress=False)
