"""Logistic regression on Iris: setosa vs versicolor from sepal length and width.

The seed notes' program (004, "IrisData"): nn.Linear(2, 1) + nn.Sigmoid, BCELoss, SGD lr=0.2,
full-batch through a DataLoader of batch_size=100. One change: the two features are
standardized (zero mean, unit variance), which lets lr=0.2 separate the classes in a few
hundred steps instead of many thousands. The plots are replaced by printed loss and accuracy.
Run: python examples/logistic_regression.py
"""

from _progress import epochs as epoch_bar

import graphtorch as torch
import graphtorch.nn as nn
import graphtorch.optim as optim
from graphtorch.datasets import load_iris
from graphtorch.utils.data import DataLoader, Dataset


class IrisData(Dataset):
    def __init__(self):
        features, labels = load_iris()
        x = features[:100, :2]  # setosa and versicolor; sepal length, sepal width
        self.x = (x - x.mean(dim=0)) / x.std(dim=0)
        self.y = labels[:100].float().view(-1, 1)
        self.len = self.y.shape[0]

    def __len__(self):
        return self.len

    def __getitem__(self, index):
        return self.x[index], self.y[index]


class LogisticRegression(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        return self.sigmoid(self.linear(x))


def accuracy(model: nn.Module, data: IrisData) -> float:
    with torch.no_grad():
        predicted = (model(data.x) >= 0.5).float()
    return (predicted == data.y).sum().item() / len(data)


def main(epochs: int = 300, seed: int = 0, progress: bool = True) -> dict:
    torch.manual_seed(seed)
    iris_data = IrisData()
    train_loader = DataLoader(dataset=iris_data, batch_size=100)
    model = LogisticRegression()
    criterion = nn.BCELoss()
    optimizer = optim.SGD(model.parameters(), lr=0.2)

    losses = []
    bar = epoch_bar(epochs, "logistic regression", progress)
    for _ in bar:
        for x, y in train_loader:
            y_pred = model(x)
            loss = criterion(y_pred, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.4f}")

    acc = accuracy(model, iris_data)
    print(f"first loss {losses[0]:.4f}, final loss {losses[-1]:.4f}, accuracy {acc:.2%} on the 100 flowers")
    return {"first_loss": losses[0], "loss": losses[-1], "accuracy": acc}


if __name__ == "__main__":
    main()
