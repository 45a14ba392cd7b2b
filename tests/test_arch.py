import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from weightlake.arch import CNN_S, Architecture, get_architecture
from weightlake.errors import ArchitectureError

finite = st.floats(-1e6, 1e6, allow_nan=False, width=32)


def test_cnn_s_facts_match_the_spec():
    assert CNN_S.n_params == 2464
    assert CNN_S.boundaries == (0, 208, 1414, 1514, 2254, 2464)
    assert CNN_S.layer_names == ("conv1", "conv2", "conv3", "fc1", "fc2")
    assert [layer.matrix_shape for layer in CNN_S.layers] == [(8, 25), (6, 200), (4, 24), (20, 36), (10, 20)]
    cols = CNN_S.csv_columns()
    assert cols[0] == "weight 0" and cols[199] == "weight 199" and cols[200] == "bias 200"
    assert cols[208] == "weight 208" and cols[-1] == "bias 2463" and len(cols) == 2464


def test_flat_order_is_parameters_order():
    from weightlake.zoo.cnn import build_cnn

    model = build_cnn(CNN_S, "relu")
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    assert torch.equal(CNN_S.state_dict_to_flat(model.state_dict()), flat)


@settings(max_examples=25, deadline=None)
@given(arrays(np.float32, (2464,), elements=finite))
def test_flat_state_dict_round_trip(flat):
    assert np.array_equal(CNN_S.state_dict_to_flat(CNN_S.flat_to_state_dict(flat)), flat)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4).flatmap(lambda n: arrays(np.float32, (n, 2464), elements=finite)))
def test_layers_and_matrices_round_trip(rows):
    layers = CNN_S.flat_to_layers(rows)
    assert layers["conv1"].shape == (len(rows), 8, 1, 5, 5) and layers["fc1"].shape == (len(rows), 20, 36)
    assert np.array_equal(CNN_S.layers_to_flat({k: v[0] for k, v in layers.items()}), rows[0])
    for layer in CNN_S.layers:
        m = CNN_S.layer_matrix(rows, layer.name)
        assert m.shape == (len(rows), *layer.matrix_shape)
        assert np.array_equal(CNN_S.matrix_to_weight(layer, m), layers[layer.name])


def test_select_is_a_view_for_torch():
    t = torch.zeros(3, 2464)
    fc1 = CNN_S.select(t, "fc1")
    fc1 += 1
    assert t[:, 1514:2234].eq(1).all() and t[:, 2234:].eq(0).all()
    assert CNN_S.select(t, "fc1.bias").shape == (3, 20)


def test_bad_state_dicts_are_named():
    sd = CNN_S.flat_to_state_dict(np.zeros(2464, np.float32))
    sd["module_list.9.weight"] = np.zeros((20, 35), np.float32)
    with pytest.raises(ArchitectureError, match=r"module_list.9.weight.*\(20, 35\)"):
        CNN_S.state_dict_to_flat(sd)
    sd = CNN_S.flat_to_state_dict(np.zeros(2464, np.float32))
    sd["extra"] = np.zeros(1)
    with pytest.raises(ArchitectureError, match="unexpected keys"):
        CNN_S.state_dict_to_flat(sd)
    with pytest.raises(ArchitectureError, match=r"\[2464\]"):
        CNN_S.flat_to_state_dict(np.zeros(100))


def test_architecture_is_data():
    again = get_architecture(CNN_S.to_dict())
    assert again == CNN_S and again.n_params == 2464
    other = Architecture.from_dict({"name": "mlp", "input_shape": [1, 28, 28], "modules": [
        {"kind": "flatten"}, {"kind": "linear", "name": "fc1", "args": {"in_features": 784, "out_features": 10}}]})
    assert other.n_params == 7850 and other.csv_columns()[-1] == "bias 7849"
