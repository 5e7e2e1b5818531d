# source: https://github.com/wenet-e2e/wekws/pull/73
# bug-class: zero-grad/missing
# symptom: the keyword-spotting loss drops for a few batches and then stalls and bounces, while the same loop with zeroed gradients keeps improving; no error
# diagnosis: `Executor.train` never calls `optimizer.zero_grad()`, so every `loss.backward()` adds to the gradients of all earlier batches and each step follows the running sum; the accepted fix inserts `optimizer.zero_grad()` right above `loss.backward()`, the line marked here
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(2)
N_MELS, FRAMES, N_KEYWORDS = 13, 30, 2
KEYWORD_PATTERNS = torch.randn(N_KEYWORDS, 6, N_MELS)


def synth_utterances(n):
    """Fbank-like features; a keyword leaves a fixed spectro-temporal pattern somewhere in the clip."""
    feats = torch.randn(n, FRAMES, N_MELS) * 0.5
    labels = torch.randint(0, N_KEYWORDS + 1, (n,))  # 0 = filler, k = keyword k
    for i in range(n):
        k = labels[i].item()
        if k > 0:
            t = torch.randint(0, FRAMES - 6, (1,)).item()
            feats[i, t:t + 6] += KEYWORD_PATTERNS[k - 1]
    return feats, labels


class Loader:
    def __init__(self, feats, labels, batch_size):
        self.feats, self.labels, self.batch_size = feats, labels, batch_size

    def __iter__(self):
        for i in range(0, len(self.labels), self.batch_size):
            yield i // self.batch_size, (self.feats[i:i + self.batch_size], self.labels[i:i + self.batch_size])


train_loader = Loader(*synth_utterances(384), batch_size=32)
cv_loader = Loader(*synth_utterances(128), batch_size=64)


# %%
class TCNKWS(nn.Module):
    def __init__(self, hidden=32):
        super().__init__()
        self.preprocessing = nn.Linear(N_MELS, hidden)
        self.backbone = nn.Sequential(
            nn.Conv1d(hidden, hidden, 5, padding=2), nn.ReLU(),
            nn.Conv1d(hidden, hidden, 3, padding=2, dilation=2), nn.ReLU(),
        )
        self.classifier = nn.Linear(hidden, N_KEYWORDS)

    def forward(self, x):
        h = torch.relu(self.preprocessing(x)).transpose(1, 2)
        h = self.backbone(h).transpose(1, 2)
        return self.classifier(h)  # (B, T, K) frame logits


def max_pooling_loss(logits, target):
    """wekws-style max-pooling loss: the best frame of each keyword decides."""
    onehot = F.one_hot(target, N_KEYWORDS + 1)[:, 1:].float()
    peak = logits.max(dim=1).values
    return F.binary_cross_entropy_with_logits(peak, onehot)


class Executor:
    def __init__(self):
        self.step = 0

    def train(self, model, optimizer, data_loader, args):
        model.train()
        clip = args.get("grad_clip", 5.0)
        log_interval = args.get("log_interval", 6)
        for batch_idx, (feats, target) in data_loader:
            logits = model(feats)
            loss = max_pooling_loss(logits, target)
            loss.backward()  # root-cause
            grad_norm = nn.utils.clip_grad_norm_(model.parameters(), clip)
            if torch.isfinite(grad_norm):
                optimizer.step()  # related
            if batch_idx % log_interval == 0:
                print(f"  batch {batch_idx:2d} loss {loss.item():.4f} grad_norm {grad_norm.item():.2f}")
            self.step += 1

    @torch.no_grad()
    def cv(self, model, data_loader):
        model.eval()
        losses = [max_pooling_loss(model(f), t).item() for _, (f, t) in data_loader]
        return sum(losses) / len(losses)


# %% gradwatch
model = TCNKWS()
optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
executor = Executor()
for epoch in range(4):
    print(f"epoch {epoch}")
    executor.train(model, optimizer, train_loader, {"grad_clip": 5.0, "log_interval": 6})
    print(f"epoch {epoch} cv loss {executor.cv(model, cv_loader):.4f}")
