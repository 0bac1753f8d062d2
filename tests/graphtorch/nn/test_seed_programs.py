"""The nn programs of the seed notes (shared/seeds 000, 003, 004), with their printed results."""

import math

import numpy as np

import graphtorch as torch
import graphtorch.nn as nn
import graphtorch.nn.functional as F

DATA3 = [
    [[0, 1, 1, 2, 2], [0, 1, 1, 0, 0], [1, 1, 0, 1, 0], [1, 0, 1, 1, 1], [0, 2, 0, 1, 0]],
    [[1, 1, 1, 2, 0], [0, 2, 1, 1, 2], [1, 2, 0, 0, 2], [0, 2, 1, 2, 1], [2, 0, 1, 2, 0]],
    [[2, 0, 2, 0, 2], [0, 0, 1, 2, 1], [1, 0, 2, 2, 1], [2, 0, 2, 0, 0], [0, 0, 1, 1, 2]],
]
KERNEL3 = [
    [[[1, 1, -1], [-1, 0, 1], [-1, -1, 0]], [[-1, 0, -1], [0, 0, -1], [1, -1, 0]], [[0, 1, 0], [1, 0, 1], [0, -1, 1]]],
    [[[-1, -1, 0], [-1, 1, 0], [-1, 1, 0]], [[1, -1, 0], [-1, 0, -1], [-1, 0, 0]], [[-1, 0, 1], [1, 0, 1], [0, -1, 0]]],
]


def test_000_single_channel_conv():
    data = torch.Tensor([[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 0],
                         [0, 1, 1, 0, 0]]).unsqueeze_(0).unsqueeze_(0)
    kernel = torch.Tensor([[1, 0, 1], [0, 1, 0], [1, 0, 1]]).unsqueeze_(0).unsqueeze_(0)
    out = F.conv2d(data, kernel)
    assert out.tolist() == [[[[4, 3, 4], [2, 4, 3], [2, 3, 4]]]]
    assert str(out) == ("tensor([[[[4., 3., 4.],\n          [2., 4., 3.],\n          [2., 3., 4.]]]])")


def test_000_three_channel_stride_two_with_bias():
    data = torch.Tensor(DATA3).unsqueeze_(0)
    kernel = torch.Tensor(KERNEL3)
    out = F.conv2d(data, kernel, stride=2, padding=1, bias=torch.Tensor([1, 0]))
    assert out.tolist() == [[[[1, 0, -3], [-6, 1, 1], [4, -3, 1]], [[-1, -6, -4], [-2, -3, -4], [-1, -3, -3]]]]


def test_000_conv_module_with_assigned_parameters():
    conv = nn.Conv2d(3, 2, kernel_size=3, stride=2, padding=1, bias=True)
    assert repr(conv) == "Conv2d(3, 2, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))"
    data = torch.Tensor(DATA3).unsqueeze_(0)
    assert conv(data).shape == (1, 2, 3, 3)
    conv.weight = nn.Parameter(torch.Tensor(KERNEL3))
    conv.bias = nn.Parameter(torch.Tensor(2).zero_())
    assert str(conv.bias) == "Parameter containing:\ntensor([0., 0.], requires_grad=True)"
    out = conv(data)
    assert out.tolist() == [[[[0, -1, -4], [-7, 0, 0], [3, -4, 0]], [[-1, -6, -4], [-2, -3, -4], [-1, -3, -3]]]]
    assert out.grad_fn.name() == "ConvolutionBackward0"
    assert [n for n, _ in conv.named_parameters()] == ["weight", "bias"]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), (2, 2))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def test_003_lenet_print_parameters_and_sgd_by_hand(capsys):
    net = Net()
    print(net)
    params = list(net.parameters())
    print(len(params))
    for i in params:
        print(i.size())
    printed = capsys.readouterr().out
    assert printed == """Net(
  (conv1): Conv2d(1, 6, kernel_size=(5, 5), stride=(1, 1))
  (conv2): Conv2d(6, 16, kernel_size=(5, 5), stride=(1, 1))
  (fc1): Linear(in_features=400, out_features=120, bias=True)
  (fc2): Linear(in_features=120, out_features=84, bias=True)
  (fc3): Linear(in_features=84, out_features=10, bias=True)
)
10
torch.Size([6, 1, 5, 5])
torch.Size([6])
torch.Size([16, 6, 5, 5])
torch.Size([16])
torch.Size([120, 400])
torch.Size([120])
torch.Size([84, 120])
torch.Size([84])
torch.Size([10, 84])
torch.Size([10])
"""
    out = net(torch.randn(1, 1, 32, 32))
    target = torch.randn(10).view(1, -1)
    loss = nn.MSELoss()(out, target)
    net.zero_grad()
    assert net.conv1.bias.grad is None
    loss.backward()
    assert net.conv1.bias.grad.shape == (6,)
    before = net.fc3.bias.detach().clone()
    for f in net.parameters():
        f.data.sub_(f.grad.data * 0.01)
    assert np.allclose(net.fc3.bias.detach().numpy(), (before - net.fc3.bias.grad * 0.01).numpy())


def test_004_bce_with_sigmoid_module():
    x = torch.tensor([-4.5, 0.7, 3.3])
    y = torch.tensor([1., 0., 1.])
    h = nn.Sigmoid()
    criterion = nn.BCELoss()
    loss = criterion(h(x), y)
    assert math.isclose(loss.item(), 1.8834843635559082, rel_tol=1e-7)
    by_hand = -(y * torch.log(torch.sigmoid(x)) + (1 - y) * torch.log(1 - torch.sigmoid(x))).mean()
    assert math.isclose(by_hand.item(), loss.item(), rel_tol=1e-6)


def test_004_sequential_regression_trains():
    torch.manual_seed(0)
    x = torch.unsqueeze(torch.linspace(-3, 3, 64), dim=1)
    y = torch.sin(x)
    model = nn.Sequential(nn.Linear(1, 32), nn.ReLU(), nn.Linear(32, 1))
    criterion = nn.MSELoss()
    first = None
    for _ in range(60):
        loss = criterion(model(x), y)
        first = loss.item() if first is None else first
        model.zero_grad()
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p.sub_(p.grad * 0.1)
    assert loss.item() < first / 3
