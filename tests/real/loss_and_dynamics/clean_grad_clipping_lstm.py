# source: https://androidkt.com/how-to-apply-gradient-clipping-in-pytorch/
# bug-class: clean/gradient-clipping
# symptom: none: the pre-clipping gradient norm is above the 1.0 threshold in the first epochs, the clipped updates keep training stable and the loss goes down
# diagnosis: correct: `torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)` is called after `loss.backward()` and before `optimizer.step()`, rescaling the gradients in place; large raw norms are expected on this long-sequence task
# %%
import torch
import torch.nn as nn

torch.manual_seed(8)

SEQ_LEN = 40


def adding_problem(n):
    values = torch.rand(n, SEQ_LEN)
    markers = torch.zeros(n, SEQ_LEN)
    for i in range(n):
        a, b = torch.randperm(SEQ_LEN)[:2]
        markers[i, a] = markers[i, b] = 1.0
    target = (values * markers).sum(dim=1, keepdim=True)
    return torch.stack([values, markers], dim=2), target


class SeqRegressor(nn.Module):
    def __init__(self, hidden=32):
        super().__init__()
        self.lstm = nn.LSTM(2, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


train_x, train_y = adding_problem(256)


# %% gradwatch
model = SeqRegressor()
criterion = nn.MSELoss()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
max_norm = 1.0

for epoch in range(6):
    norms, losses = [], []
    for i in range(0, len(train_x), 32):
        optimizer.zero_grad()
        loss = criterion(model(train_x[i:i + 32]), train_y[i:i + 32])
        loss.backward()
        total_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=max_norm)
        optimizer.step()
        norms.append(total_norm.item())
        losses.append(loss.item())
    print(f"epoch {epoch}: loss {sum(losses) / len(losses):.4f}, max pre-clip grad norm {max(norms):.2f}")
