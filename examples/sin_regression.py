"""A 1-200-100-1 ReLU network fits y = sin(x) + noise: the seed notes' "ComplexeData" program (004).

Both ways of writing the network appear, as in the notes: a Module subclass (NeuralNetworks) and
nn.Sequential. Adam lr=0.01, MSELoss, full batch through a DataLoader; plots replaced by prints.
Run: python examples/sin_regression.py
"""

from _progress import epochs as epoch_bar

import graphtorch as torch
import graphtorch.nn as nn
import graphtorch.optim as optim
from graphtorch.utils.data import DataLoader, Dataset


class ComplexeData(Dataset):
    def __init__(self):
        self.x = torch.unsqueeze(torch.linspace(-10, 10, 100), dim=1)
        noise = 0.5 * torch.rand(self.x.size())
        self.y = torch.sin(self.x) + noise
        self.len = self.y.shape[0]

    def __len__(self):
        return self.len

    def __getitem__(self, index):
        return self.x[index], self.y[index]


class NeuralNetworks(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden_1 = nn.Linear(1, 200)
        self.hidden_2 = nn.Linear(200, 100)
        self.output = nn.Linear(100, 1)
        self.relu = nn.ReLU()

    def forward(self, x):
        x = self.relu(self.hidden_1(x))
        x = self.relu(self.hidden_2(x))
        return self.output(x)


def sequential() -> nn.Module:
    return nn.Sequential(
        nn.Linear(1, 200),
        nn.ReLU(),
        nn.Linear(200, 100),
        nn.ReLU(),
        nn.Linear(100, 1))


def train(model: nn.Module, epochs: int, name: str, progress: bool) -> list[float]:
    train_loader = DataLoader(dataset=ComplexeData(), batch_size=100)
    optimizer = optim.Adam(model.parameters(), lr=0.01)
    criterion = nn.MSELoss()
    losses = []
    bar = epoch_bar(epochs, name, progress)
    for _ in bar:
        for x, y in train_loader:
            y_pred = model(x)
            loss = criterion(y_pred, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    print(f"{name}: first loss {losses[0]:.4f}, final loss {losses[-1]:.4f}")
    return losses


def main(epochs: int = 1000, seed: int = 0, progress: bool = True) -> dict:
    results = {}
    for name, build in (("class", NeuralNetworks), ("sequential", sequential)):
        torch.manual_seed(seed)
        losses = train(build(), epochs, f"{name} form", progress)
        results[name] = {"first_loss": losses[0], "loss": losses[-1]}
    return results


if __name__ == "__main__":
    main()
