# source: https://github.com/rasbt/dora-from-scratch/pull/1
# bug-class: optimizer-wiring/optimizer-of-another-model-instance
# symptom: the DoRA fine-tune shows the same loss every epoch, so DoRA looks much worse than LoRA on the same task
# diagnosis: the DoRA run's optimizer is built over `model_lora.parameters()` (copied from the LoRA cell) instead of `model_dora.parameters()`; `zero_grad()` and `step()` act on the LoRA copy, whose gradients are None, while the DoRA magnitudes and adapters collect gradients nobody applies; the fix passes `model_dora.parameters()`
# %%
import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(1)


class LoRALayer(nn.Module):
    def __init__(self, in_dim, out_dim, rank, alpha):
        super().__init__()
        self.A = nn.Parameter(torch.randn(in_dim, rank) / rank ** 0.5)
        self.B = nn.Parameter(torch.zeros(rank, out_dim))
        self.alpha = alpha

    def forward(self, x):
        return self.alpha * (x @ self.A @ self.B)


class LinearWithLoRA(nn.Module):
    def __init__(self, linear, rank=4, alpha=8):
        super().__init__()
        self.linear = linear
        self.lora = LoRALayer(linear.in_features, linear.out_features, rank, alpha)

    def forward(self, x):
        return self.linear(x) + self.lora(x)


class LinearWithDoRA(nn.Module):
    def __init__(self, linear, rank=4, alpha=8):
        super().__init__()
        self.linear = linear
        self.lora = LoRALayer(linear.in_features, linear.out_features, rank, alpha)
        self.m = nn.Parameter(linear.weight.norm(p=2, dim=1, keepdim=True).detach())

    def forward(self, x):
        combined = self.linear.weight + self.lora.alpha * (self.lora.A @ self.lora.B).T
        direction = combined / combined.norm(p=2, dim=1, keepdim=True)
        return F.linear(x, self.m * direction, self.linear.bias)


def adapt(model, wrapper):
    model = copy.deepcopy(model)
    for i, layer in enumerate(model):
        if isinstance(layer, nn.Linear):
            layer.requires_grad_(False)
            model[i] = wrapper(layer)
    return model


def train(model, optimizer, x, y, epochs, tag):
    for epoch in range(epochs):
        for i in range(0, len(x), 64):
            loss = F.cross_entropy(model(x[i:i + 64]), y[i:i + 64])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()  # related
        print(f"{tag} epoch {epoch}: loss {loss.item():.4f}")


w_a, w_b = torch.randn(20, 3), torch.randn(20, 3)
x_a, x_b = torch.randn(512, 20), torch.randn(512, 20)
y_a, y_b = (x_a @ w_a).argmax(1), (x_b @ (w_a + 0.8 * w_b)).argmax(1)  # task B is a shifted task A

model_pretrained = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3))
train(model_pretrained, torch.optim.Adam(model_pretrained.parameters(), lr=3e-3), x_a, y_a, 3, "pretrain")

# %%
model_lora = adapt(model_pretrained, LinearWithLoRA)
optimizer_lora = torch.optim.Adam(model_lora.parameters(), lr=3e-3)
train(model_lora, optimizer_lora, x_b, y_b, 3, "lora")

# %% gradwatch
model_dora = adapt(model_pretrained, LinearWithDoRA)
optimizer_dora = torch.optim.Adam(model_lora.parameters(), lr=3e-3)  # root-cause
train(model_dora, optimizer_dora, x_b, y_b, 3, "dora")
