# source: https://github.com/MorvanZhou/PyTorch-Tutorial/issues/57
# bug-class: backward-error/backward-twice
# symptom: the second loss.backward() raises "Trying to backward through the graph a second time"
# diagnosis: `h_state` returned by the RNN is fed into the next step with its history, so the next backward walks into the previous step's graph, which the previous backward already freed; detach it (`h_state = h_state.detach()`, the tutorial's `h_state.data`) before the next step
# expect-error: RuntimeError
# %%
import numpy as np
import torch
import torch.nn as nn

torch.manual_seed(1)

TIME_STEP = 10
INPUT_SIZE = 1
LR = 0.02


class RNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.RNN(input_size=INPUT_SIZE, hidden_size=32, num_layers=1, batch_first=True)
        self.out = nn.Linear(32, 1)

    def forward(self, x, h_state):
        r_out, h_state = self.rnn(x, h_state)
        outs = [self.out(r_out[:, t, :]) for t in range(r_out.size(1))]
        return torch.stack(outs, dim=1), h_state


def make_window(step):
    start, end = step * np.pi, (step + 1) * np.pi
    steps = np.linspace(start, end, TIME_STEP, dtype=np.float32)
    x = torch.from_numpy(np.sin(steps)[np.newaxis, :, np.newaxis])
    y = torch.from_numpy(np.cos(steps)[np.newaxis, :, np.newaxis])
    return x, y


# %%
rnn = RNN()
optimizer = torch.optim.Adam(rnn.parameters(), lr=LR)
loss_func = nn.MSELoss()


def evaluate(steps=(100, 101, 102)):
    h, total = None, 0.0
    with torch.no_grad():
        for s in steps:
            x, y = make_window(s)
            pred, h = rnn(x, h)
            total += loss_func(pred, y).item()
    return total / len(steps)


# %% gradwatch
def train(n_steps=60):
    h_state = None
    for step in range(n_steps):
        x, y = make_window(step)
        prediction, h_state = rnn(x, h_state)  # root-cause
        loss = loss_func(prediction, y)
        optimizer.zero_grad()
        loss.backward()  # related
        optimizer.step()
        if step % 20 == 0:
            print(f"step {step} loss {loss.item():.4f} eval {evaluate():.4f}")


train()
