# source: https://github.com/dpressel/dliss-tutorial/issues/1
# bug-class: clean/truncated-bptt-detach
# symptom: none; the language model trains across consecutive windows without errors
# diagnosis: correct: the hidden state is carried from window to window (truncated BPTT) but `h.detach(), c.detach()` cuts it off from the previous window's graph before each forward, so every backward stays inside its own window
# %%
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(13)

text = "the quick brown fox jumps over the lazy dog and the cat sat on the mat " * 12
vocab = sorted(set(text))
stoi = {ch: i for i, ch in enumerate(vocab)}
data = torch.tensor([stoi[ch] for ch in text])


def to_streams(ids, n_streams):
    usable = (len(ids) // n_streams) * n_streams
    return ids[:usable].view(n_streams, -1)


train_streams = to_streams(data[: int(len(data) * 0.9)], 4)
valid_streams = to_streams(data[int(len(data) * 0.9):], 4)


# %%
class CharLSTM(nn.Module):
    def __init__(self, vocab_size, emb=16, hidden=48):
        super().__init__()
        self.emb = nn.Embedding(vocab_size, emb)
        self.lstm = nn.LSTM(emb, hidden, batch_first=True)
        self.proj = nn.Linear(hidden, vocab_size)

    def forward(self, x, state=None):
        out, state = self.lstm(self.emb(x), state)
        return self.proj(out), state


def detach_state(state):
    h, c = state
    return h.detach(), c.detach()


def evaluate(model, streams, bptt=20):
    model.eval()
    state, total, count = None, 0.0, 0
    with torch.no_grad():
        for i in range(0, streams.size(1) - 1, bptt):
            x = streams[:, i:i + bptt]
            y = streams[:, i + 1:i + 1 + bptt]
            x = x[:, : y.size(1)]
            logits, state = model(x, state)
            total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum").item()
            count += y.numel()
    model.train()
    return total / count


# %% gradwatch
def train_epoch(model, optimizer, streams, bptt=20):
    state = None
    for i in range(0, streams.size(1) - 1, bptt):
        x = streams[:, i:i + bptt]
        y = streams[:, i + 1:i + 1 + bptt]
        x = x[:, : y.size(1)]
        if state is not None:
            state = detach_state(state)
        logits, state = model(x, state)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return loss.item()


model = CharLSTM(len(vocab))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
for epoch in range(4):
    train_loss = train_epoch(model, optimizer, train_streams)
    val_loss = evaluate(model, valid_streams)
    print(f"epoch {epoch} train {train_loss:.3f} valid {val_loss:.3f} ppl {math.exp(val_loss):.2f}")
