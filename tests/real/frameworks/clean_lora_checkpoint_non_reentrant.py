# source: https://github.com/huggingface/peft/issues/1142
# bug-class: clean/lora-checkpoint-non-reentrant
# symptom: none: the LoRA matrices train with gradient checkpointing on, the frozen base stays as it was
# diagnosis: correct: `checkpoint(..., use_reentrant=False)` records the graph even though the block's input (from a frozen embedding) does not require grad, so the LoRA parameters inside get their gradients; frozen base weights are the point of LoRA
# %%
import math
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

warnings.filterwarnings("ignore")
torch.manual_seed(1142)

VOCAB, DIM, RANK, SEQ = 50, 32, 4, 12


class LoRALinear(nn.Module):
    def __init__(self, in_features, out_features, r=RANK, alpha=8):
        super().__init__()
        self.base = nn.Linear(in_features, out_features)
        self.base.requires_grad_(False)
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
        self.attn_proj = LoRALinear(DIM, DIM)
        self.mlp = nn.Sequential(LoRALinear(DIM, 4 * DIM), nn.GELU(), LoRALinear(4 * DIM, DIM))
        self.norm.requires_grad_(False)

    def forward(self, x):
        x = x + self.attn_proj(self.norm(x))
        return x + self.mlp(self.norm(x))


class TinyLM(nn.Module):
    def __init__(self, n_layers=2):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, DIM)
        self.blocks = nn.ModuleList(Block() for _ in range(n_layers))
        self.head = nn.Linear(DIM, VOCAB)
        self.embed.requires_grad_(False)
        self.head.requires_grad_(False)

    def forward(self, ids):
        h = self.embed(ids)
        for block in self.blocks:
            h = checkpoint(block, h, use_reentrant=False)
        return self.head(h)


pattern = torch.arange(SEQ + 1) % 7
data = (pattern + torch.randint(0, 7, (64, 1))) % VOCAB
model = TinyLM()
optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)

# %% gradwatch
model.train()
for step in range(30):
    batch = data[torch.randint(0, len(data), (16,))]
    logits = model(batch[:, :-1])
    loss = F.cross_entropy(logits.reshape(-1, VOCAB), batch[:, 1:].reshape(-1))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % 10 == 0:
        print(f"step {step}: loss {loss.item():.4f}")
print(f"final loss {loss.item():.4f}")
