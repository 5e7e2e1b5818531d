# source: https://github.com/huggingface/transformers/issues/7024
# bug-class: clean/hf-trainer-custom-compute-loss
# symptom: none: a `Trainer` subclass computes a class-weighted cross-entropy in `compute_loss`; the loss goes down
# diagnosis: correct: overriding `compute_loss` with the model's logits and a weighted `CrossEntropyLoss` is the documented way to change the loss; `Trainer` calls `backward()` and `optimizer.step()` itself, and its linear warm-up starts from learning rate 0
# %%
import os
import tempfile
import warnings

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["WANDB_DISABLED"] = "true"
warnings.filterwarnings("ignore")

import torch
from torch import nn
from transformers import BertConfig, BertForSequenceClassification, PrinterCallback, Trainer, TrainingArguments
from transformers.utils import logging as hf_logging

hf_logging.set_verbosity_error()
torch.manual_seed(7024)

config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, max_position_embeddings=32, num_labels=3)
model = BertForSequenceClassification(config)


class TokenDataset(torch.utils.data.Dataset):
    def __init__(self, n):
        self.ids = torch.randint(5, 64, (n, 12))
        self.labels = torch.bucketize(self.ids[:, 1], torch.tensor([20, 54]))  # imbalanced classes

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(12, dtype=torch.long),
                "labels": self.labels[i]}


class WeightedLossTrainer(Trainer):
    def __init__(self, *args, class_weights=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_fct = nn.CrossEntropyLoss(weight=class_weights)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = self.loss_fct(outputs.logits.view(-1, model.config.num_labels), labels.view(-1))
        return (loss, outputs) if return_outputs else loss


train_dataset = TokenDataset(96)
counts = torch.bincount(train_dataset.labels, minlength=3).float()
class_weights = counts.sum() / (3 * counts.clamp(min=1))

# %% gradwatch
args = TrainingArguments(output_dir=tempfile.mkdtemp(), num_train_epochs=2, per_device_train_batch_size=16,
                         learning_rate=5e-4, warmup_steps=3, logging_strategy="no", save_strategy="no",
                         report_to=[], use_cpu=True, disable_tqdm=True, dataloader_num_workers=0)
trainer = WeightedLossTrainer(model=model, args=args, train_dataset=train_dataset, class_weights=class_weights)
trainer.remove_callback(PrinterCallback)  # keep the notebook free of the timing log
result = trainer.train()
print(f"trained {result.global_step} steps, final training loss {result.training_loss:.4f}")
