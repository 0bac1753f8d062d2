"""The benchmark workloads, written once against the shared torch/graphtorch API.

Each builder takes the framework module (`torch` or `graphtorch`) so both run the same model.
"""

from __future__ import annotations


def lenet(torch):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10),
    )


def mlp784(torch):
    nn = torch.nn
    return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))


def sin_mlp(torch):
    nn = torch.nn
    return nn.Sequential(nn.Linear(1, 200), nn.ReLU(), nn.Linear(200, 100), nn.ReLU(), nn.Linear(100, 1))


def copy_weights(src, dst) -> None:
    """Give `dst` the parameters and buffers of `src` (either framework), through numpy."""
    import numpy as np

    values = {k: np.array(v.detach().numpy()) for k, v in src.state_dict().items()}
    framework = __import__(type(next(iter(dst.state_dict().values()))).__module__.split(".")[0])
    dst.load_state_dict({k: framework.from_numpy(v) for k, v in values.items()})


def train_step(opt, loss_fn, forward):
    """The training step people write: zero_grad, forward, loss, backward, step."""
    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(forward(x), y)
        loss.backward()
        opt.step()
        return loss
    return step
