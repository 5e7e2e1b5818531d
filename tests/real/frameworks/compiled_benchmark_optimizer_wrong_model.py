# source: https://adhdecode-articles-3.pages.dev/articles/pytorch/pytorch-compile-torch-dynamo-speedup/
# bug-class: optimizer-wiring/optimizer-of-another-model-instance
# symptom: in the eager-vs-compiled comparison the eager baseline's loss is the same every epoch (1.6617) while the compiled run's goes down, so `torch.compile` looks like it trains better
# diagnosis: the eager baseline trains `model_no_compile`, a fresh instance loaded from `model`'s state dict, but the one optimizer was built over `model.parameters()`; its `zero_grad()`/`step()` touch only `model`, so the eager copy's gradients pile up and its weights never change; the baseline needs its own optimizer over `model_no_compile.parameters()`
# %%
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(2)


class SimpleModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(32, 64)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(64, 5)

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(x)))


data = torch.randn(256, 32)
labels = (data[:, :5].argmax(1) + (data[:, 5] > 1).long()) % 5
loader = DataLoader(TensorDataset(data, labels), batch_size=32, shuffle=False)

model = SimpleModel()
criterion = nn.CrossEntropyLoss()
optimizer = torch.optim.Adam(model.parameters(), lr=0.005)  # root-cause

# %% gradwatch
# eager baseline, from the same starting weights
model_no_compile = SimpleModel()
model_no_compile.load_state_dict(model.state_dict())
for epoch in range(3):
    running = 0.0
    for inputs, targets in loader:
        optimizer.zero_grad()
        loss = criterion(model_no_compile(inputs), targets)
        loss.backward()
        optimizer.step()  # related
        running += loss.item()
    print(f"eager    epoch {epoch + 1}: loss {running / len(loader):.4f}")

# the compiled run; backend="aot_eager" traces the same graph as inductor and needs no C++ compiler
compiled_model = torch.compile(model, backend="aot_eager")
for epoch in range(3):
    running = 0.0
    for inputs, targets in loader:
        optimizer.zero_grad()
        loss = criterion(compiled_model(inputs), targets)
        loss.backward()
        optimizer.step()
        running += loss.item()
    print(f"compiled epoch {epoch + 1}: loss {running / len(loader):.4f}")
