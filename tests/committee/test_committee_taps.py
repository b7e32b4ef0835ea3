import pytest
import torch
from torch import nn

from recsys_committee.committee import TapPathError, append_token, normalize_features, resolve_module, tap_outputs


def _model():
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 8), nn.Tanh()), nn.Linear(8, 2))


def test_resolve_dotted_numeric_and_negative_paths():
    m = _model()
    assert resolve_module(m, "") is m
    assert resolve_module(m, "2.1") is m[2][1]
    assert resolve_module(m, "-1") is m[3]
    assert resolve_module(m, "2.-2") is m[2][0]


def test_unknown_path_lists_close_valid_paths():
    with pytest.raises(TapPathError) as err:
        resolve_module(_model(), "2.3")
    msg = str(err.value)
    assert "'2.3'" in msg and "2.0" in msg and "2.1" in msg


def test_tap_records_and_hooks_are_removed_even_on_error():
    m = _model()
    x = torch.randn(3, 4)
    with tap_outputs(m, ["1", "2.1"]) as taps:
        m(x)
    assert torch.equal(taps["1"], torch.relu(m[0](x)))
    assert taps["2.1"].shape == (3, 8)
    assert all(not mod._forward_hooks for mod in m.modules())
    with pytest.raises(RuntimeError, match="boom"):
        with tap_outputs(m, ["0"]):
            raise RuntimeError("boom")
    assert all(not mod._forward_hooks for mod in m.modules())


def test_normalize_features_shapes():
    assert normalize_features(torch.zeros(2, 5)).shape == (2, 5)
    assert normalize_features(torch.zeros(2, 7, 5)).shape == (2, 7, 5)
    conv = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    tokens = normalize_features(conv)
    assert tokens.shape == (2, 4, 3)
    assert torch.equal(tokens[1, 3], conv[1, :, 1, 1])  # token (h=1, w=1) holds the channels
    assert normalize_features((torch.zeros(2, 7, 5), "attn")).shape == (2, 7, 5)
    with pytest.raises(ValueError):
        normalize_features(torch.zeros(2, 3, 4, 5, 6))


def test_append_token_extends_sequence_and_unhooks():
    layer = nn.Identity()
    model = nn.Sequential(layer)
    x, tok = torch.zeros(2, 3, 4), torch.ones(2, 4)
    with append_token(model, "0", tok):
        y = model(x)
    assert y.shape == (2, 4, 4) and torch.equal(y[:, -1], tok)
    assert model(x).shape == (2, 3, 4)
