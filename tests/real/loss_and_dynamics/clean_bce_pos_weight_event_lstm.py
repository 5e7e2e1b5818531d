# source: https://discuss.pytorch.org/t/loss-function-for-binary-classification/72150
# bug-class: clean/bce-with-logits-pos-weight
# symptom: none: events are rare (about 1 positive frame in 40), the weighted loss goes down, event recall stays high and precision improves
# diagnosis: correct: the LSTM returns raw logits (no Sigmoid layer), `nn.BCEWithLogitsLoss(pos_weight=...)` re-weights the rare positive frames, `reduction='none'` is only used to mask the padded frames before an explicit mean, and `torch.sigmoid` is applied only to threshold predictions
# %%
import torch
import torch.nn as nn

torch.manual_seed(72)

MAX_LEN, N_FEATURES = 50, 3


def make_recordings(n=96):
    lengths = torch.randint(30, MAX_LEN + 1, (n,))
    x = torch.randn(n, MAX_LEN, N_FEATURES) * 0.5
    events = torch.zeros(n, MAX_LEN)
    for i in range(n):
        t = torch.randint(0, lengths[i].item() - 1, (1,)).item()
        events[i, t] = 1.0
        x[i, t, 0] += 2.5
        x[i, t + 1, 1] += 1.5
    mask = (torch.arange(MAX_LEN)[None, :] < lengths[:, None]).float()
    return x * mask.unsqueeze(2), events, mask


class EventDetector(nn.Module):
    def __init__(self, hidden=24):
        super().__init__()
        self.lstm = nn.LSTM(N_FEATURES, hidden, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * hidden, 1)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.fc(out).squeeze(-1)


x, events, mask = make_recordings()
n_pos = (events * mask).sum()
n_neg = mask.sum() - n_pos
pos_weight = torch.tensor([(n_neg / n_pos).item()])


# %% gradwatch
model = EventDetector()
criterion = nn.BCEWithLogitsLoss(pos_weight=pos_weight, reduction="none")
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)


def recall_and_precision():
    with torch.no_grad():
        pred = (torch.sigmoid(model(x)) > 0.5).float() * mask
    tp = (pred * events).sum()
    return (tp / events.sum()).item(), (tp / pred.sum().clamp(min=1)).item()


for epoch in range(8):
    for i in range(0, len(x), 32):
        logits = model(x[i:i + 32])
        per_frame = criterion(logits, events[i:i + 32])
        loss = (per_frame * mask[i:i + 32]).sum() / mask[i:i + 32].sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    rec, prec = recall_and_precision()
    print(f"epoch {epoch}: loss {loss.item():.4f}, event recall {rec:.3f}, precision {prec:.3f}")
