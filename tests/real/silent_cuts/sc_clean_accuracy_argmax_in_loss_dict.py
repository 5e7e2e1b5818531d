# source: https://github.com/fundamentalvision/Uni-Perceiver/issues/2
# bug-class: clean/argmax-metric
# symptom: none; the loss falls and the training accuracy rises
# diagnosis: correct: the accuracy entry is computed with `argmax` inside the loss module, next to the cross entropy, but only the cross-entropy terms are summed into the loss that is backpropagated; the accuracy is a logged metric
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(2)

VOCAB, N_CLASSES, SEQ = 50, 5, 12


def make_batch(n):
    tokens = torch.randint(0, VOCAB, (n, SEQ))
    labels = (tokens[:, :3].sum(dim=1) % N_CLASSES)
    return tokens, labels


# %%
class BagOfTokens(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 32)
        self.pos = nn.Parameter(torch.randn(SEQ, 32) * 0.1)
        self.mlp = nn.Sequential(nn.Linear(32 * SEQ, 128), nn.ReLU(), nn.Linear(128, N_CLASSES))

    def forward(self, tokens):
        return self.mlp((self.embed(tokens) + self.pos).flatten(1))


class ClassificationLosses(nn.Module):
    def __init__(self, label_smoothing=0.0):
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits, labels):
        out = {"ce_loss": F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)}
        out["accuracy"] = (logits.argmax(dim=-1) == labels).float().mean()
        return out


model = BagOfTokens()
criterion = ClassificationLosses(label_smoothing=0.05)
optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
train_tokens, train_labels = make_batch(1024)


# %% gradwatch
for epoch in range(6):
    logs = {"ce_loss": 0.0, "accuracy": 0.0}
    n_batches = 0
    for i in range(0, len(train_tokens), 128):
        loss_dict = criterion(model(train_tokens[i:i + 128]), train_labels[i:i + 128])
        losses = sum(v for k, v in loss_dict.items() if "loss" in k)
        optimizer.zero_grad()
        losses.backward()
        optimizer.step()
        for k, v in loss_dict.items():
            logs[k] += v.item()
        n_batches += 1
    print(f"epoch {epoch}: " + "  ".join(f"{k} {v / n_batches:.4f}" for k, v in logs.items()))
