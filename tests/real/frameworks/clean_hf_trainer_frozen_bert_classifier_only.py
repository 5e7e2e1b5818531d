# source: https://github.com/huggingface/transformers/issues/400
# bug-class: clean/hf-trainer-frozen-encoder-classifier-only
# symptom: none: the BERT body is frozen and only the sequence-classification head is trained through `Trainer`; the loss goes down
# diagnosis: correct: `for param in model.bert.parameters(): param.requires_grad = False` freezes the encoder (embeddings, layers, pooler) and leaves `model.classifier` trainable; `Trainer` builds its optimizer from the parameters that still require grad, so the frozen weights without gradients are intended
# %%
import os
import tempfile
import warnings

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["WANDB_DISABLED"] = "true"
warnings.filterwarnings("ignore")

import torch
from transformers import BertConfig, BertForSequenceClassification, PrinterCallback, Trainer, TrainingArguments
from transformers.utils import logging as hf_logging

hf_logging.set_verbosity_error()
torch.manual_seed(400)

config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, max_position_embeddings=32, num_labels=2,
                    initializer_range=0.2)  # a wide init gives the random body features as varied as pretrained ones
model = BertForSequenceClassification(config)  # stands in for from_pretrained("bert-base-uncased")

for param in model.bert.parameters():
    param.requires_grad = False

trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
print(f"trainable parameters: {trainable} of {sum(p.numel() for p in model.parameters())}")


class TokenDataset(torch.utils.data.Dataset):
    def __init__(self, n):
        self.labels = torch.randint(0, 2, (n,))
        low, high = torch.randint(5, 30, (n, 12)), torch.randint(38, 64, (n, 12))
        self.ids = torch.where(self.labels.view(n, 1) == 1, high, low)  # two vocabularies, one per class
        self.ids[:, 0] = 2  # [CLS]-like first token

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(12, dtype=torch.long),
                "labels": self.labels[i]}


train_dataset = TokenDataset(96)


def full_batch_loss(model):
    model.eval()
    with torch.no_grad():
        out = model(input_ids=train_dataset.ids, labels=train_dataset.labels)
    return out.loss.item()


print(f"loss before training {full_batch_loss(model):.4f}")

# %% gradwatch
args = TrainingArguments(output_dir=tempfile.mkdtemp(), num_train_epochs=4, per_device_train_batch_size=16,
                         learning_rate=5e-2, warmup_steps=2, logging_strategy="no", save_strategy="no",
                         report_to=[], use_cpu=True, disable_tqdm=True, dataloader_num_workers=0)
trainer = Trainer(model=model, args=args, train_dataset=train_dataset)
trainer.remove_callback(PrinterCallback)
result = trainer.train()
print(f"trained {result.global_step} steps, loss after training {full_batch_loss(model):.4f}")
