# source: https://github.com/Lightning-AI/pytorch-lightning/issues/18254
# bug-class: backward-error/requires-grad-missing
# symptom: loss.backward() inside the closure raises "element 0 of tensors does not require grad and does not have a grad_fn"
# diagnosis: the copied AdamW's `step` is decorated with `@torch.no_grad()` and calls `closure()` inside it, so the forward pass in the closure records no graph; run the closure under `torch.enable_grad()`
# expect-error: RuntimeError
# %%
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.optim import Optimizer

torch.manual_seed(3)


def make_data(n=256, vocab=50, seq=12, n_labels=4):
    tokens = torch.randint(0, vocab, (n, seq))
    labels = (tokens[:, 0] % n_labels)
    return tokens, labels


class CommentClassifier(nn.Module):
    def __init__(self, vocab=50, dim=32, n_labels=4):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.hidden = nn.Linear(dim, dim)
        self.classifier = nn.Linear(dim, n_labels)
        self.dropout = nn.Dropout(0.1)

    def forward(self, tokens):
        pooled = self.embed(tokens).mean(dim=1)
        h = self.dropout(torch.relu(self.hidden(pooled)))
        return self.classifier(h)


# %%
class AdamW(Optimizer):
    """AdamW as copied from an older transformers release."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            loss = closure()  # root-cause
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                beta1, beta2 = group["betas"]
                state["step"] += 1
                state["exp_avg"].mul_(beta1).add_(p.grad, alpha=1 - beta1)
                state["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                denom = state["exp_avg_sq"].sqrt().add_(group["eps"])
                step_size = group["lr"] * math.sqrt(1 - beta2 ** state["step"]) / (1 - beta1 ** state["step"])
                p.addcdiv_(state["exp_avg"], denom, value=-step_size)
                if group["weight_decay"] > 0:
                    p.add_(p, alpha=-group["lr"] * group["weight_decay"])
        return loss


# %% gradwatch
def training_step(model, tokens, labels):
    logits = model(tokens)
    return F.cross_entropy(logits, labels)


def fit(model, optimizer, tokens, labels, epochs=3, batch_size=32):
    for epoch in range(epochs):
        model.train()
        total = 0.0
        for i in range(0, len(tokens), batch_size):
            xb, yb = tokens[i:i + batch_size], labels[i:i + batch_size]

            def closure():
                optimizer.zero_grad()
                loss = training_step(model, xb, yb)
                loss.backward()  # related
                return loss

            total += optimizer.step(closure).item()
        print(f"epoch {epoch}: train loss {total / (len(tokens) // batch_size):.4f}")


tokens, labels = make_data()
model = CommentClassifier()
fit(model, AdamW(model.parameters(), lr=3e-3, weight_decay=0.01), tokens, labels)
