# source: https://discuss.pytorch.org/t/pytorch-gradient-accumulation/55955
# bug-class: clean/gradient-accumulation
# symptom: none: a sensor-forecasting model trains with an effective batch of 4 x 16 windows; the loss goes down
# diagnosis: correct: `model.zero_grad()` runs once before the loop and then only right after each `optimizer.step()`, so gradients of `accumulation_steps` backward passes (each loss divided by that count) are summed on purpose before every update
# %%
import torch
import torch.nn as nn

torch.manual_seed(0)
WINDOW, HORIZON = 24, 4


def sensor_series(n_series=8, length=480):
    t = torch.arange(length, dtype=torch.float32)
    freqs = torch.rand(n_series, 1) * 0.2 + 0.05
    return torch.sin(freqs * t) + 0.1 * torch.randn(n_series, length)


def windows(series):
    xs, ys = [], []
    for s in series:
        for start in range(0, s.numel() - WINDOW - HORIZON, 6):
            xs.append(s[start:start + WINDOW])
            ys.append(s[start + WINDOW:start + WINDOW + HORIZON])
    return torch.stack(xs).unsqueeze(1), torch.stack(ys)


inputs, targets = windows(sensor_series())
inputs, targets = inputs[:512], targets[:512]
training_set = [(inputs[i:i + 16], targets[i:i + 16]) for i in range(0, 512, 16)]  # 32 mini-batches
print("mini-batches:", len(training_set))


class Forecaster(nn.Module):
    def __init__(self, channels=16):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv1d(1, channels, 5, padding=2), nn.ReLU(),
            nn.Conv1d(channels, channels, 5, padding=4, dilation=2), nn.ReLU(),
        )
        self.head = nn.Linear(channels * WINDOW, HORIZON)

    def forward(self, x):
        return self.head(self.conv(x).flatten(1))


model = Forecaster()
loss_function = nn.MSELoss()
optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
accumulation_steps = 4

# %% gradwatch
for epoch in range(4):
    model.zero_grad()                                   # Reset gradients tensors
    epoch_loss = 0.0
    for i, (x, y) in enumerate(training_set):
        predictions = model(x)                          # Forward pass
        loss = loss_function(predictions, y)            # Compute loss function
        epoch_loss += loss.item()
        loss = loss / accumulation_steps                # Normalize our loss (if averaged)
        loss.backward()                                 # Backward pass
        if (i + 1) % accumulation_steps == 0:           # Wait for several backward steps
            optimizer.step()                            # Now we can do an optimizer step
            model.zero_grad()                           # Reset gradients tensors
    print(f"epoch {epoch}: mean mini-batch loss {epoch_loss / len(training_set):.4f}")
