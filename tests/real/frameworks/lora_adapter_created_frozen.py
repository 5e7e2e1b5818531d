# source: https://github.com/huggingface/transformers/issues/26098
# bug-class: optimizer-wiring/lora-adapter-created-frozen
# symptom: the fine-tune runs and the loss moves a little, but the LoRA A matrices show `requires_grad=False` during training and never change
# diagnosis: the adapter's `lora_A` is created with `requires_grad=False` (copied from the line that freezes the base weight) while its sibling `lora_B` is trainable, so half of every adapter stays at its random initialisation; the fix creates it trainable
# %%
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(26098)

DIM, N_CLASSES, RANK = 24, 3, 4


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, r=RANK, alpha=16):
        super().__init__()
        self.base = base
        self.base.weight = nn.Parameter(base.weight.detach(), requires_grad=False)
        self.base.bias = nn.Parameter(base.bias.detach(), requires_grad=False)
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features), requires_grad=False)  # root-cause
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scaling = alpha / r

    def forward(self, x):
        return self.base(x) + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scaling


model = nn.Sequential(nn.Linear(DIM, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, N_CLASSES))
model[0] = LoRALinear(model[0])
model[2] = LoRALinear(model[2])

teacher = nn.Sequential(nn.Linear(DIM, 32), nn.Tanh(), nn.Linear(32, N_CLASSES))
x_train = torch.randn(512, DIM)
with torch.no_grad():
    y_train = teacher(x_train).argmax(1)

# %% gradwatch
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)  # related
for epoch in range(4):
    for i in range(0, len(x_train), 64):
        loss = F.cross_entropy(model(x_train[i:i + 64]), y_train[i:i + 64])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"epoch {epoch}: loss {loss.item():.4f}")
