# source: https://github.com/huggingface/transformers/issues/340
# bug-class: zero-grad/missing
# symptom: the double-heads GPT fine-tune (language modelling plus multiple choice) runs and the loss goes down, but the gradient norm the loop reports grows epoch after epoch instead of shrinking with the loss; no error
# diagnosis: the training loop of the example calls `loss.backward()`, `optimizer.step()` and `scheduler.step()` but never `optimizer.zero_grad()`, so every step follows the sum of all gradients since the start; the fix adds `optimizer.zero_grad()` to each step (marked at the `backward()` it must precede)
# %%
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import torch
from transformers import OpenAIGPTConfig, OpenAIGPTDoubleHeadsModel, get_linear_schedule_with_warmup
from transformers.utils import logging as hf_logging

hf_logging.set_verbosity_error()
torch.manual_seed(340)

VOCAB, SEQ, N_CHOICES = 64, 12, 2
config = OpenAIGPTConfig(vocab_size=VOCAB, n_positions=32, n_embd=32, n_layer=2, n_head=2,
                         resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, summary_first_dropout=0.0)
model = OpenAIGPTDoubleHeadsModel(config)

# ROCStories-like data: a story prefix and two candidate endings; the right ending continues the count
N = 96
starts = torch.randint(0, VOCAB, (N, 1))
right = (starts + torch.arange(SEQ)) % VOCAB
wrong = right.clone()
wrong[:, SEQ // 2:] = torch.randint(0, VOCAB, (N, SEQ - SEQ // 2))
mc_labels = torch.randint(0, N_CHOICES, (N,))
input_ids = torch.where(mc_labels.view(N, 1, 1) == 0, torch.stack([right, wrong], 1), torch.stack([wrong, right], 1))
mc_token_ids = torch.full((N, N_CHOICES), SEQ - 1)
lm_labels = input_ids.clone()

# %% gradwatch
EPOCHS, BATCH, LM_COEF = 6, 16, 0.9
num_train_optimization_steps = EPOCHS * N // BATCH
optimizer = torch.optim.AdamW(model.parameters(), lr=4e-3, weight_decay=0.01)
scheduler = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=2,
                                            num_training_steps=num_train_optimization_steps)
model.train()
for epoch in range(EPOCHS):
    for start in range(0, N, BATCH):
        sl = slice(start, start + BATCH)
        out = model(input_ids=input_ids[sl], mc_token_ids=mc_token_ids[sl], labels=lm_labels[sl],
                    mc_labels=mc_labels[sl])
        loss = LM_COEF * out.loss + out.mc_loss
        loss.backward()  # root-cause
        optimizer.step()  # related
        scheduler.step()
    grad_norm = torch.norm(torch.stack([p.grad.norm() for p in model.parameters() if p.grad is not None])).item()
    print(f"epoch {epoch}: lm loss {out.loss.item():.4f}, mc loss {out.mc_loss.item():.4f}, grad norm {grad_norm:.2f}")
