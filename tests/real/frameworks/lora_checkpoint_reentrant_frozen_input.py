# source: https://github.com/microsoft/LoRA/issues/120
# bug-class: silent-cut/reentrant-checkpoint-no-grad-input
# symptom: with gradient checkpointing on, only the head trains: the LoRA matrices get no gradient and never change (a warning says gradients will be None); without checkpointing they train
# diagnosis: the blocks run through `checkpoint(..., use_reentrant=True)` and their input comes from the frozen embedding, so no input requires grad: the reentrant checkpoint returns an output without a graph and the LoRA parameters inside get no gradient; the fix passes `use_reentrant=False`
# %%
import math
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

warnings.filterwarnings("ignore")
torch.manual_seed(120)

VOCAB, DIM, RANK, SEQ = 50, 32, 4, 12


class LoRALinear(nn.Module):
    def __init__(self, in_features, out_features, r=RANK, alpha=8):
        super().__init__()
        self.base = nn.Linear(in_features, out_features)
        self.base.weight.requires_grad_(False)
        self.base.bias.requires_grad_(False)
        self.lora_A = nn.Parameter(torch.empty(r, in_features))
        self.lora_B = nn.Parameter(torch.zeros(out_features, r))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scaling = alpha / r

    def forward(self, x):
        return self.base(x) + (x @ self.lora_A.t() @ self.lora_B.t()) * self.scaling


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(DIM)
        self.fc1 = LoRALinear(DIM, 4 * DIM)
        self.fc2 = LoRALinear(4 * DIM, DIM)
        for p in self.norm.parameters():
            p.requires_grad_(False)

    def forward(self, x):
        return x + self.fc2(F.gelu(self.fc1(self.norm(x))))


class TinyLM(nn.Module):
    def __init__(self, n_layers=2, gradient_checkpointing=True):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, DIM)
        self.embed.weight.requires_grad_(False)
        self.blocks = nn.ModuleList(Block() for _ in range(n_layers))
        self.head = nn.Linear(DIM, VOCAB)  # trained in full, as a new task head
        self.gradient_checkpointing = gradient_checkpointing

    def forward(self, ids):
        h = self.embed(ids)
        for block in self.blocks:
            if self.gradient_checkpointing and self.training:
                h = checkpoint(block, h, use_reentrant=True)  # root-cause
            else:
                h = block(h)
        return self.head(h)


data = torch.randint(0, VOCAB, (64, SEQ + 1))
model = TinyLM()
trainable = [p for p in model.parameters() if p.requires_grad]
print(f"trainable parameters: {sum(p.numel() for p in trainable)}")
optimizer = torch.optim.AdamW(trainable, lr=1e-2)

# %% gradwatch
lora_before = model.blocks[0].fc1.lora_B.detach().clone()
model.train()
for step in range(30):
    batch = data[torch.randint(0, len(data), (16,))]
    logits = model(batch[:, :-1])
    loss = F.cross_entropy(logits.reshape(-1, VOCAB), batch[:, 1:].reshape(-1))
    optimizer.zero_grad()
    loss.backward()  # related
    optimizer.step()
    if step % 10 == 0:
        print(f"step {step}: loss {loss.item():.4f}")
print("lora_B changed:", not torch.equal(lora_before, model.blocks[0].fc1.lora_B))
