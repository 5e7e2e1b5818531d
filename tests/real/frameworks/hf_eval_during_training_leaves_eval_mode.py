# source: https://github.com/ThilinaRajapakse/simpletransformers/issues/941
# bug-class: mode/eval-mode-training
# symptom: with evaluation during training, the training loss falls faster after the first evaluation than it does with dropout kept on, and the logged `model.training` is False from the second epoch; no error
# diagnosis: `train_model` calls `model.train()` once before the epoch loop, and the evaluation run at the end of each epoch calls `model.eval()`; nothing switches the model back, so from the second epoch on the masked-LM fine-tune trains with dropout off; the fix calls `model.train()` again after each evaluation (or at the start of every epoch)
# %%
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import torch
from transformers import BertConfig, BertForMaskedLM, get_linear_schedule_with_warmup
from transformers.utils import logging as hf_logging

hf_logging.set_verbosity_error()
torch.manual_seed(941)

VOCAB, SEQ, MASK_ID = 64, 16, 3
config = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, max_position_embeddings=32, hidden_dropout_prob=0.3,
                    attention_probs_dropout_prob=0.1)
model = BertForMaskedLM(config)


def make_split(n):
    topic = torch.randint(5, VOCAB, (n, 1))
    ids = torch.randint(5, VOCAB, (n, SEQ))
    return torch.where(torch.rand(n, SEQ) < 0.9, topic, ids)  # each line mostly repeats its topic token


def mask_tokens(ids, generator):
    labels = ids.clone()
    masked = torch.rand(ids.shape, generator=generator) < 0.3
    labels[~masked] = -100
    inputs = ids.clone()
    inputs[masked] = MASK_ID
    return inputs, labels


train_ids, eval_ids = make_split(96), make_split(32)


def evaluate(model):
    model.eval()
    gen = torch.Generator().manual_seed(0)
    inputs, labels = mask_tokens(eval_ids, gen)
    with torch.no_grad():
        return model(input_ids=inputs, labels=labels).loss.item()


# %% gradwatch
EPOCHS, BATCH = 4, 8
optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=0.0)
scheduler = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=2,
                                            num_training_steps=EPOCHS * len(train_ids) // BATCH)
gen = torch.Generator().manual_seed(941)
model.train()  # root-cause
for epoch in range(EPOCHS):
    epoch_loss = 0.0
    train_mode = model.training
    for start in range(0, len(train_ids), BATCH):
        inputs, labels = mask_tokens(train_ids[start:start + BATCH], gen)
        loss = model(input_ids=inputs, labels=labels).loss  # related
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        epoch_loss += loss.item()
    eval_loss = evaluate(model)  # evaluate_during_training
    print(f"epoch {epoch}: train loss {epoch_loss / (len(train_ids) // BATCH):.4f}, eval loss {eval_loss:.4f}, "
          f"dropout active during the epoch: {train_mode}")
