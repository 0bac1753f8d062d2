"""Linear regression with nn.Linear, SGD and MSELoss, data served by a Dataset and a DataLoader.

The seed notes' program (004, "SimpleData"), with the plotting replaced by prints:
y = 5 + 5x + noise, noise uniform in [0, 5), so the fit should find weight ~5 and bias ~7.5.
Run: python examples/linear_regression.py
"""

from _progress import epochs as epoch_bar

import graphtorch as torch
import graphtorch.nn as nn
import graphtorch.optim as optim
from graphtorch.utils.data import DataLoader, Dataset


class SimpleData(Dataset):
    def __init__(self):
        self.x = torch.unsqueeze(torch.linspace(-1, 1, 100), dim=1)
        noise = 5 * torch.rand(self.x.size())
        bias = 5 * torch.ones(self.x.size())
        self.y = bias + 5 * self.x + noise
        self.len = self.y.shape[0]

    def __len__(self):
        return self.len

    def __getitem__(self, index):
        return self.x[index], self.y[index]


class LinearRegression(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(1, 1)

    def forward(self, x):
        return self.linear(x)


def main(epochs: int = 100, seed: int = 0, progress: bool = True) -> dict:
    torch.manual_seed(seed)
    train_loader = DataLoader(dataset=SimpleData(), batch_size=100)
    model = LinearRegression()
    optimizer = optim.SGD(model.parameters(), lr=0.2)
    criterion = nn.MSELoss()

    losses = []
    bar = epoch_bar(epochs, "linear regression", progress)
    for _ in bar:
        for x, y in train_loader:
            y_pred = model(x)
            loss = criterion(y_pred, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.4f}")

    weight, bias = model.linear.weight.item(), model.linear.bias.item()
    print(f"first loss {losses[0]:.4f}, final loss {losses[-1]:.4f}; y = {weight:.3f} x + {bias:.3f}")
    return {"first_loss": losses[0], "loss": losses[-1], "weight": weight, "bias": bias}


if __name__ == "__main__":
    main()
