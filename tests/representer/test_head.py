import numpy as np
import pytest

from representer import InvalidInputError, LinearHead


def test_theta_puts_bias_in_last_column():
    head = LinearHead(weights=np.array([[1.0, 2.0], [3.0, 4.0]]), bias=np.array([5.0, 6.0]))
    np.testing.assert_array_equal(head.theta, [[1.0, 2.0, 5.0], [3.0, 4.0, 6.0]])
    assert head.num_classes == 2 and not head.is_binary


def test_binary_head_has_two_classes():
    head = LinearHead(weights=np.ones((1, 3)), bias=np.zeros(1))
    assert head.is_binary and head.num_classes == 2 and head.feature_dim == 3


@pytest.mark.parametrize(
    ("weights", "bias", "argument"),
    [
        (np.ones(3), np.zeros(1), "weights"),
        (np.ones((2, 3)), np.zeros(3), "bias"),
        (np.array([[np.nan, 1.0]]), np.zeros(1), "weights"),
        (np.ones((1, 2)), np.array([np.inf]), "bias"),
    ],
)
def test_bad_heads_name_the_argument(weights, bias, argument):
    with pytest.raises(InvalidInputError) as error:
        LinearHead(weights=weights, bias=bias)
    assert error.value.argument == argument
    assert argument in str(error.value)
