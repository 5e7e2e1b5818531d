# source: https://dev-discuss.pytorch.org/t/compiled-optimizer-w-lr-scheduler-now-supported/2107
# bug-class: clean/compiled-optimizer-tensor-lr-warmup
# symptom: none: the first steps run with a tiny learning rate (a linear warm-up from 1% of it), then the loss of the compiled model goes down
# diagnosis: correct: the learning rate is a tensor so the compiled `opt.step(); sched.step()` function is not recompiled when the warm-up changes it; AdamW updates every parameter of the compiled model, and the small first learning rates are the warm-up by design
# %%
import logging

import torch
import torch.nn as nn
import torch.nn.functional as F

torch._logging.set_logs(dynamo=logging.ERROR)  # hide the compiled optimizer's profiler notice
torch.manual_seed(2107)

model = nn.Sequential(nn.Linear(16, 64), nn.GELU(), nn.Linear(64, 64), nn.GELU(), nn.Linear(64, 1))
# backend="aot_eager" traces the same graph as inductor and needs no C++ compiler
compiled_model = torch.compile(model, backend="aot_eager")

x_train = torch.randn(512, 16)
y_train = (x_train[:, :4].sum(1, keepdim=True) - x_train[:, 4:8].prod(1, keepdim=True)).tanh()

optimizer = torch.optim.AdamW(model.parameters(), lr=torch.tensor(3e-3), weight_decay=0.01)
scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.01, total_iters=10)


@torch.compile(backend="aot_eager")
def optimizer_step():
    optimizer.step()
    scheduler.step()


# %% gradwatch
for step in range(40):
    idx = torch.randint(0, len(x_train), (64,))
    loss = F.mse_loss(compiled_model(x_train[idx]), y_train[idx])
    optimizer.zero_grad()
    loss.backward()
    optimizer_step()
    if step % 10 == 0:
        print(f"step {step}: loss {loss.item():.4f}  lr {optimizer.param_groups[0]['lr'].item():.5f}")
print(f"final loss {loss.item():.4f}")
