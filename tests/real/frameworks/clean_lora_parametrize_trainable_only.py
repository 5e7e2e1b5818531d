# source: https://github.com/karpathy/llama2.c/pull/187
# bug-class: clean/lora-parametrization-trainable-params-only
# symptom: none: the LoRA fine-tune (adapters as weight parametrizations, gradients accumulated over two micro-batches) lowers the loss on the new task
# diagnosis: correct: `apply_lora` freezes the base weights and registers `weight + B @ A * scaling` as a parametrization, so `layer.weight` is recomputed (a non-leaf) on every access; the optimizer is built after that, over the parameters that still require grad (the adapters and the head), and `zero_grad()` runs after each accumulated `step()`
# %%
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.nn.utils.parametrize as parametrize

torch.manual_seed(187)


class LoRAParametrization(nn.Module):
    def __init__(self, fan_in, fan_out, rank=4, alpha=8.0):
        super().__init__()
        self.lora_a = nn.Parameter(torch.empty(rank, fan_in))
        self.lora_b = nn.Parameter(torch.zeros(fan_out, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.scaling = alpha / rank

    def forward(self, weight):
        return weight + (self.lora_b @ self.lora_a) * self.scaling


def apply_lora(model, rank=4):
    for p in model.parameters():
        p.requires_grad_(False)
    for module in model.modules():
        if isinstance(module, nn.Linear) and module is not model.head:
            fan_out, fan_in = module.weight.shape
            parametrize.register_parametrization(module, "weight", LoRAParametrization(fan_in, fan_out, rank))
    model.head.requires_grad_(True)  # the new task's head is trained in full


class MLPClassifier(nn.Module):
    def __init__(self, n_classes):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(16, 64), nn.SiLU(), nn.Linear(64, 64), nn.SiLU())
        self.head = nn.Linear(64, n_classes)

    def forward(self, x):
        return self.head(self.body(x))


def configure_optimizers(model, lr, weight_decay):
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr)


model = MLPClassifier(n_classes=3)  # stands in for a pretrained checkpoint
apply_lora(model)
optimizer = configure_optimizers(model, lr=5e-3, weight_decay=0.01)
print(f"trainable: {sum(p.numel() for p in model.parameters() if p.requires_grad)}"
      f" of {sum(p.numel() for p in model.parameters())}")

x = torch.randn(384, 16)
y = ((x[:, 0] > 0).long() + (x[:, 1] > 0.5).long())

# %% gradwatch
ACCUMULATION, MICRO = 2, 32
for epoch in range(4):
    for i in range(0, len(x), MICRO):
        loss = F.cross_entropy(model(x[i:i + MICRO]), y[i:i + MICRO]) / ACCUMULATION
        loss.backward()
        if (i // MICRO + 1) % ACCUMULATION == 0:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    print(f"epoch {epoch}: loss {loss.item() * ACCUMULATION:.4f}")
