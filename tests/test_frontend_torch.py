"""Models exported from torch (TorchScript exporter, opset 17) imported by the frontend and
compared with onnxruntime on the exported model and with torch itself."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from crossmap.frontend import compare_with_onnxruntime, import_onnx  # noqa: E402

from crossmap.testing import onnx_models as om  # noqa: E402

TOL = 1e-4


def check(module, shape, batch=6, inputs=None, **export):
    """Export ``module`` for per-sample ``shape``, import it, and compare with onnxruntime and torch."""
    torch.manual_seed(0)
    _randomize_norms(module)
    model = om.torch_export(module, torch.rand(1, *shape), **export)
    net = import_onnx(model)
    x = np.random.default_rng(1).random((batch, *shape)).astype(np.float32) if inputs is None else inputs
    result = compare_with_onnxruntime(model, net, x)
    assert result["max_rel_error"] <= TOL, result
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy().reshape(len(x), -1)
    got = net.apply_output_ops(net.evaluate(x)).reshape(len(x), -1)
    assert np.max(np.abs(got - expected)) <= TOL * max(1.0, float(np.max(np.abs(expected))))
    return net, model


def _randomize_norms(module):
    """Give batch norms non-trivial running statistics, as after training."""
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=gen) - 0.5)


class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(x.size(0), -1)
        x = F.relu(self.fc2(F.relu(self.fc1(x))))
        return F.log_softmax(self.fc3(x), dim=1)


def test_mlp():
    module = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 5))
    net, _ = check(module, (1, 8, 8))
    assert [p.activation for p in net.layers] == ["relu", "relu", "identity"]


def test_lenet5_with_dynamic_batch_view_and_log_softmax():
    net, model = check(LeNet5(), (1, 28, 28), batch=32)
    assert any(n.op_type == "Shape" for n in model.graph.node)  # x.view(x.size(0), -1) with a dynamic batch
    assert [p.reduce for p in net.layers] == ["sum", "max", "sum", "max", "sum", "sum", "sum"]
    assert net.metadata["output_ops"][0]["op"] == "LogSoftmax"


def test_lenet5_with_fixed_batch():
    net, _ = check(LeNet5(), (1, 28, 28), batch=1, dynamic_batch=False)
    assert net.metadata["batch"] == 1


def test_grouped_and_depthwise_conv_with_batchnorm():
    module = nn.Sequential(
        nn.Conv2d(4, 8, 3, padding=1, groups=2), nn.BatchNorm2d(8), nn.ReLU6(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))
    net, model = check(module, (4, 8, 8), fold_constants=False)
    assert sum(n.op_type == "BatchNormalization" for n in model.graph.node) == 2
    assert [p.activation for p in net.layers][:2] == ["clip", "relu"]  # batch norms folded into the convs
    assert net.population(net.layers[1].name).shape == (8, 4, 4)


def test_pooling_variants():
    module = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(),
                           nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False, ceil_mode=True),
                           nn.MaxPool2d(2, stride=1, padding=1), nn.AdaptiveMaxPool2d(1), nn.Flatten())
    check(module, (2, 9, 9))


@pytest.mark.parametrize("activation", [nn.LeakyReLU(0.2), nn.Hardsigmoid(), nn.Sigmoid(), nn.Tanh(),
                                        nn.Hardtanh(-0.5, 0.5), nn.PReLU(6)])
def test_activations(activation):
    module = nn.Sequential(nn.Conv2d(1, 6, 3), activation, nn.Flatten(), nn.Linear(6 * 4 * 4, 3))
    inputs = np.random.default_rng(2).standard_normal((5, 1, 6, 6)).astype(np.float32)
    net, _ = check(module, (1, 6, 6), inputs=inputs)
    assert len(net.layers) == 2


class StepNet(nn.Module):
    """Binary neurons as torch writes them: (W x + b > 0).float()."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(5)
        self.w1 = nn.Parameter(torch.randint(-1, 2, (16, 12), generator=gen).float())
        self.w2 = nn.Parameter(torch.randint(-1, 2, (4, 16), generator=gen).float())

    def forward(self, x):
        h = (x @ self.w1.t() > 0).float()
        return (F.linear(h, self.w2, torch.full((4,), -1.0)) >= 0).float()


def test_step_network_from_torch_is_exact():
    x = (np.random.default_rng(3).random((64, 12)) < 0.5).astype(np.float32)
    net, _ = check(StepNet(), (12,), inputs=x)
    assert [p.activation for p in net.layers] == ["step", "step"]
    assert [p.params["inclusive"] for p in net.layers] == [False, True]


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.side = nn.Conv2d(3, 2, 1)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(6 * 5 * 5, 3)
        self.register_buffer("mean", torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1))

    def forward(self, x):
        x = (x - self.mean) / 0.25
        a = F.relu(self.conv1(x))
        a = F.relu(self.conv2(a) + a)
        b = torch.sigmoid(self.side(x))
        y = torch.cat([a, b], dim=1)
        return F.softmax(self.fc(self.drop(torch.flatten(y, 1))), dim=-1)


def test_residual_concat_dropout_and_input_normalization():
    net, _ = check(Residual(), (3, 5, 5))
    assert net.metadata["output_ops"] == [{"op": "Softmax", "name": net.metadata["output_ops"][0]["name"]}]
    assert len(net.layers) == 4  # conv1, conv2 (+ skip), side, fc
