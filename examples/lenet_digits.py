"""LeNet-5 on handwritten digits: the seed notes' Net (003) trained with the notes' pipeline (002).

MNIST cannot be downloaded here, so the offline stand-in is the UCI digits set shipped in
graphtorch.datasets (1797 8x8 images, pixels 0..16). Each image is scaled to 0..1 and upsampled
to 32x32 by nearest neighbour (every pixel becomes a 4x4 block, with expand + reshape), so the
network is exactly the notes' LeNet: conv 5x5 -> 28x28 -> pool 14x14 -> conv 5x5 -> 10x10 ->
pool 5x5 -> 16*5*5 = 400 -> 120 -> 84 -> 10, with the parameter shapes the notes list.
80% of the images train (shuffled mini-batches of 32, SGD with momentum), 20% test.
Run: OPENBLAS_NUM_THREADS=1 python examples/lenet_digits.py  (10 epochs, ~97% test accuracy, ~13 s
on the shared 2-core machine; OpenBLAS's default thread pool makes the small matmuls ~6x slower there)
"""

from _progress import epochs as epoch_bar

import graphtorch as torch
import graphtorch.nn as nn
import graphtorch.nn.functional as F
import graphtorch.optim as optim
from graphtorch.datasets import load_digits
from graphtorch.utils.data import DataLoader, TensorDataset, random_split


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


def upsample(images: torch.Tensor, factor: int = 4) -> torch.Tensor:
    """[N, H, W] -> [N, 1, H*factor, W*factor], nearest neighbour."""
    n, h, w = images.shape
    blocks = images.reshape(n, 1, h, 1, w, 1).expand(n, 1, h, factor, w, factor)
    return blocks.reshape(n, 1, h * factor, w * factor)


def digits_split(seed: int) -> tuple[TensorDataset, TensorDataset]:
    images, labels = load_digits()
    data = TensorDataset(upsample(images / 16), labels)
    n_test = len(data) // 5
    return random_split(data, [len(data) - n_test, n_test], generator=torch.Generator().manual_seed(seed))


def train(model, loader, optimizer) -> float:
    model.train()
    total, count = 0.0, 0
    for images, labels in loader:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        total, count = total + loss.item() * len(labels), count + len(labels)
    return total / count


def test(model, loader) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for images, labels in loader:
            correct += (model(images).argmax(dim=1) == labels).sum().item()
    return correct / len(loader.dataset)


def main(epochs: int = 10, seed: int = 0, progress: bool = True) -> dict:
    torch.manual_seed(seed)
    train_set, test_set = digits_split(seed)
    train_loader = DataLoader(train_set, batch_size=32, shuffle=True)
    test_loader = DataLoader(test_set, batch_size=256)
    model = Net()
    optimizer = optim.SGD(model.parameters(), lr=0.02, momentum=0.9)

    losses, accuracies = [], []
    bar = epoch_bar(epochs, "lenet digits", progress)
    for epoch in bar:
        losses.append(train(model, train_loader, optimizer))
        accuracies.append(test(model, test_loader))
        bar.set_postfix(loss=f"{losses[-1]:.4f}", acc=f"{accuracies[-1]:.2%}")
        print(f"epoch {epoch + 1}: train loss {losses[-1]:.4f}, test accuracy {accuracies[-1]:.2%}")
    print(f"final: train loss {losses[-1]:.4f}, test accuracy {accuracies[-1]:.2%} on {len(test_set)} images")
    return {"first_loss": losses[0], "loss": losses[-1], "accuracy": accuracies[-1], "accuracies": accuracies}


if __name__ == "__main__":
    main()
