# source: https://github.com/lm-sys/FastChat/pull/1489
# bug-class: clean/lora-reentrant-checkpoint-input-require-grads-hook
# symptom: none: with reentrant gradient checkpointing on and the whole base model frozen, the LoRA adapters train
# diagnosis: correct: a forward hook on the frozen embedding (what `enable_input_require_grads()` installs) makes its output require grad, so every reentrant `checkpoint` segment has an input that requires grad and rebuilds its graph in backward; the embedding weight itself stays frozen
# %%
import math
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

warnings.filterwarnings("ignore")
torch.manual_seed(1489)

VOCAB, DIM, RANK, SEQ = 50, 32, 4, 12


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, r=RANK, alpha=8):
        super().__init__()
        self.base = base
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scaling = alpha / r

    def forward(self, x):
        return self.base(x) + (x @ self.lora_A.t() @ self.lora_B.t()) * self.scaling


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(DIM), nn.LayerNorm(DIM)
        self.attn = nn.MultiheadAttention(DIM, 2, batch_first=True)
        self.up, self.down = nn.Linear(DIM, 4 * DIM), nn.Linear(4 * DIM, DIM)

    def forward(self, x):
        h = self.norm1(x)
        mask = torch.triu(torch.ones(x.shape[1], x.shape[1], dtype=torch.bool), 1)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.down(F.gelu(self.up(self.norm2(x))))


class TinyLM(nn.Module):
    def __init__(self, n_layers=2):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, DIM)
        self.blocks = nn.ModuleList(Block() for _ in range(n_layers))
        self.head = nn.Linear(DIM, VOCAB)
        self.gradient_checkpointing = True

    def forward(self, ids):
        h = self.embed(ids)
        for block in self.blocks:
            h = checkpoint(block, h, use_reentrant=True) if self.gradient_checkpointing else block(h)
        return self.head(h)


def make_inputs_require_grad(module, inputs, output):
    output.requires_grad_(True)


model = TinyLM()  # stands in for a pretrained model
model.requires_grad_(False)
for block in model.blocks:
    block.up, block.down = LoRALinear(block.up), LoRALinear(block.down)
model.embed.register_forward_hook(make_inputs_require_grad)

trainable = [p for p in model.parameters() if p.requires_grad]
print(f"trainable parameters: {sum(p.numel() for p in trainable)} of {sum(p.numel() for p in model.parameters())}")
pattern = torch.arange(SEQ + 1) % 7
data = (pattern + torch.randint(0, 7, (64, 1))) % VOCAB
optimizer = torch.optim.AdamW(trainable, lr=1e-2)

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
print("lora_B trained:", model.blocks[0].up.lora_B.abs().sum().item() > 0)
