# source: https://github.com/cloneofsimo/lora/issues/263
# bug-class: clean/lora-zero-grad-at-loop-end
# symptom: none: the LoRA fine-tune of a small frozen denoiser lowers the noise-prediction loss
# diagnosis: correct: `optimizer.zero_grad()` comes at the end of each step, after `clip_grad_norm_`, `optimizer.step()` and `lr_scheduler.step()`, so every backward starts from cleared gradients (None on the first step); it does not have to sit before `backward()`
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(263)


class LoraInjectedLinear(nn.Module):
    def __init__(self, linear: nn.Linear, r=4, scale=1.0):
        super().__init__()
        self.linear = linear
        self.lora_down = nn.Linear(linear.in_features, r, bias=False)
        self.lora_up = nn.Linear(r, linear.out_features, bias=False)
        self.scale = scale
        nn.init.normal_(self.lora_down.weight, std=1 / r)
        nn.init.zeros_(self.lora_up.weight)

    def forward(self, x):
        return self.linear(x) + self.lora_up(self.lora_down(x)) * self.scale


class TinyDenoiser(nn.Module):
    def __init__(self, dim=16, hidden=64):
        super().__init__()
        self.time_embed = nn.Sequential(nn.Linear(1, hidden), nn.SiLU())
        self.inp = nn.Linear(dim, hidden)
        self.mid = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, dim)

    def forward(self, x, t):
        h = F.silu(self.inp(x) + self.time_embed(t[:, None]))
        return self.out(F.silu(self.mid(h)))


def inject_trainable_lora(model, target=("inp", "mid", "out"), r=4):
    model.requires_grad_(False)
    params = []
    for name in target:
        wrapped = LoraInjectedLinear(getattr(model, name), r=r)
        setattr(model, name, wrapped)
        params += list(wrapped.lora_up.parameters()) + list(wrapped.lora_down.parameters())
    return params


unet = TinyDenoiser()  # stands in for the pretrained model
lora_params = inject_trainable_lora(unet)
optimizer = torch.optim.AdamW(lora_params, lr=1e-2)
lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 10))

instance = torch.randn(1, 16).repeat(64, 1) + 0.1 * torch.randn(64, 16)  # the few "instance images"
alphas = torch.linspace(0.99, 0.05, 100)

# %% gradwatch
unet.train()
running = 0.0
for step in range(80):
    x0 = instance[torch.randint(0, len(instance), (16,))]
    t = torch.randint(0, 100, (16,))
    noise = torch.randn_like(x0)
    a = alphas[t][:, None]
    noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
    loss = F.mse_loss(unet(noisy, t.float() / 100), noise)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(lora_params, 1.0)
    optimizer.step()
    lr_scheduler.step()
    optimizer.zero_grad()
    running += loss.item()
    if step % 20 == 19:
        print(f"steps {step - 19}-{step}: mean loss {running / 20:.4f}")
        running = 0.0
