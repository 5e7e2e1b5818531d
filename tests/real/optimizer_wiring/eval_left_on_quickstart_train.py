# source: https://github.com/pytorch/tutorials/issues/1624
# bug-class: eval-mode/left-on-after-evaluation
# symptom: only epoch 1 trains in training mode; from epoch 2 on `train()` runs with dropout switched off and BatchNorm normalising with (and no longer updating) its running statistics, as the printed mode shows; no error
# diagnosis: `test()` calls `model.eval()` and `train()` never switches back; the fix asked for in the issue puts `model.train()` at the start of `train()`, between the two lines marked here
# %%
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(1)


TEMPLATES = torch.rand(10, 14, 14)


def make_fashion_like(n):
    """Stand-in for FashionMNIST: one template per class plus noise, 14x14 grey images."""
    labels = torch.randint(0, len(TEMPLATES), (n,))
    images = TEMPLATES[labels] + 0.8 * torch.randn(n, 14, 14)
    return TensorDataset(images.unsqueeze(1), labels)


training_data = make_fashion_like(1024)
test_data = make_fashion_like(256)

batch_size = 64
train_dataloader = DataLoader(training_data, batch_size=batch_size)
test_dataloader = DataLoader(test_data, batch_size=batch_size)


# %%
class NeuralNetwork(nn.Module):
    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear_relu_stack = nn.Sequential(
            nn.Linear(14 * 14, 128),
            nn.BatchNorm1d(128),
            nn.ReLU(),
            nn.Dropout(0.3),
            nn.Linear(128, 128),
            nn.ReLU(),
            nn.Dropout(0.3),
            nn.Linear(128, 10),
        )

    def forward(self, x):
        x = self.flatten(x)
        return self.linear_relu_stack(x)


model = NeuralNetwork()
loss_fn = nn.CrossEntropyLoss()
optimizer = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)

# %% gradwatch
def train(dataloader, model, loss_fn, optimizer):  # root-cause
    size = len(dataloader.dataset)  # root-cause
    print(f"training mode: {model.training}")
    for batch, (X, y) in enumerate(dataloader):
        pred = model(X)
        loss = loss_fn(pred, y)

        loss.backward()
        optimizer.step()  # related
        optimizer.zero_grad()

        if batch % 8 == 0:
            loss, current = loss.item(), (batch + 1) * len(X)
            print(f"loss: {loss:>7f}  [{current:>5d}/{size:>5d}]")


def test(dataloader, model, loss_fn):
    size = len(dataloader.dataset)
    num_batches = len(dataloader)
    model.eval()
    test_loss, correct = 0, 0
    with torch.no_grad():
        for X, y in dataloader:
            pred = model(X)
            test_loss += loss_fn(pred, y).item()
            correct += (pred.argmax(1) == y).type(torch.float).sum().item()
    test_loss /= num_batches
    correct /= size
    print(f"Test Error: \n Accuracy: {(100*correct):>0.1f}%, Avg loss: {test_loss:>8f} \n")


epochs = 4
for t in range(epochs):
    print(f"Epoch {t+1}\n-------------------------------")
    train(train_dataloader, model, loss_fn, optimizer)
    test(test_dataloader, model, loss_fn)
print("Done!")
