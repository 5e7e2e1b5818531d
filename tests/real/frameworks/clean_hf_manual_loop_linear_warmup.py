# source: https://github.com/google-research/bert/issues/1293
# bug-class: clean/hf-linear-warmup-from-zero-with-accumulation
# symptom: none: the first optimizer step runs with learning rate 0 (the linear warm-up starts there), then the rate ramps up and the fine-tune's loss goes down
# diagnosis: correct: `get_linear_schedule_with_warmup` gives lr 0 at step 0 by design, so the first update only fills Adam's moments; gradients are accumulated over two micro-batches before each `step()`, with `zero_grad()` after it
# %%
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import torch
from transformers import BertConfig, BertForSequenceClassification, get_linear_schedule_with_warmup
from transformers.utils import logging as hf_logging

hf_logging.set_verbosity_error()
torch.manual_seed(1293)

config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, max_position_embeddings=32, num_labels=2)
model = BertForSequenceClassification(config)

input_ids = torch.randint(5, 64, (96, 16))
labels = (input_ids[:, 1] > 34).long()  # the label is carried by the first real token
attention_mask = torch.ones_like(input_ids)

# %% gradwatch
EPOCHS, BATCH, ACCUMULATION = 3, 16, 2
steps_per_epoch = len(input_ids) // (BATCH * ACCUMULATION)
optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.01)
scheduler = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=2,
                                            num_training_steps=EPOCHS * steps_per_epoch)
model.train()
for epoch in range(EPOCHS):
    for i, start in enumerate(range(0, len(input_ids), BATCH)):
        out = model(input_ids=input_ids[start:start + BATCH], attention_mask=attention_mask[start:start + BATCH],
                    labels=labels[start:start + BATCH])
        (out.loss / ACCUMULATION).backward()
        if (i + 1) % ACCUMULATION == 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
    print(f"epoch {epoch}: loss {out.loss.item():.4f}, lr {scheduler.get_last_lr()[0]:.2e}")
