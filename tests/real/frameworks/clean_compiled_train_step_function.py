# source: https://docs.pytorch.org/tutorials/intermediate/torch_compile_tutorial.html
# bug-class: clean/compiled-whole-train-step
# symptom: none: the whole training step (zero_grad, forward, loss, backward, optimizer step) is one compiled function, and the loss goes down
# diagnosis: correct: `torch.compile` on a function that calls `backward()` and `opt.step()` splits it at the backward call and runs the optimizer on the same parameter objects the model holds; `zero_grad(True)` at the start of the function clears the previous step's gradients
# %%
import logging

import torch
import torch.nn as nn
import torch.nn.functional as F

torch._logging.set_logs(dynamo=logging.ERROR)  # hide the compiled optimizer's profiler notice
torch.manual_seed(2023)


class SmallCNN(nn.Module):
    def __init__(self, n_classes=3):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16 * 4 * 4, n_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))


def make_batch(n=32):
    y = torch.randint(0, 3, (n,))
    x = 0.3 * torch.randn(n, 1, 16, 16)
    for i, label in enumerate(y.tolist()):  # class 0: a row, class 1: a column, class 2: a diagonal
        if label == 0:
            x[i, 0, 8, :] += 1.0
        elif label == 1:
            x[i, 0, :, 8] += 1.0
        else:
            x[i, 0].diagonal().add_(1.0)
    return x, y


model = SmallCNN()
opt = torch.optim.Adam(model.parameters(), lr=3e-3)


def train(mod, data):
    opt.zero_grad(True)
    pred = mod(data[0])
    loss = F.cross_entropy(pred, data[1])
    loss.backward()
    opt.step()
    return loss


# backend="aot_eager" traces the same graph as inductor and needs no C++ compiler
train_opt = torch.compile(train, backend="aot_eager")
batches = [make_batch() for _ in range(6)]

# %% gradwatch
for epoch in range(4):
    for batch in batches:
        loss = train_opt(model, batch)
    print(f"epoch {epoch}: loss {loss.item():.4f}")
