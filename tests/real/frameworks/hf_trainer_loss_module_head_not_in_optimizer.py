# source: https://github.com/huggingface/sentence-transformers/issues/2872
# bug-class: optimizer/param-not-in-optimizer
# symptom: the sentence-pair classifier trains through `Trainer` and the loss moves a little, but the softmax classifier's weights never change from their random initialisation; no error
# diagnosis: the trainable classifier lives in the loss module (as in `SoftmaxLoss`), not in the model handed to `Trainer`; `Trainer.create_optimizer` builds AdamW over `self.model`'s parameters only, so the classifier gets gradients in `compute_loss` that no optimizer applies; the fix builds the optimizer over the loss module's parameters too (here: pass `optimizers=` or make the classifier part of the model)
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
from transformers import BertConfig, BertModel, PrinterCallback, Trainer, TrainingArguments
from transformers.utils import logging as hf_logging

hf_logging.set_verbosity_error()
torch.manual_seed(2872)

SEQ, HIDDEN = 10, 32
config = BertConfig(vocab_size=64, hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, max_position_embeddings=32)
encoder = BertModel(config, add_pooling_layer=False)


class PairDataset(torch.utils.data.Dataset):
    """NLI-like pairs: 0 entailment (same topic token), 1 neutral, 2 contradiction."""

    def __init__(self, n):
        self.a = torch.randint(5, 64, (n, SEQ))
        self.b = torch.randint(5, 64, (n, SEQ))
        self.labels = torch.randint(0, 3, (n,))
        self.b[self.labels == 0, 1] = self.a[self.labels == 0, 1]
        self.b[self.labels == 2, 1] = 4

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"a_ids": self.a[i], "b_ids": self.b[i], "labels": self.labels[i]}


class SoftmaxPairLoss(nn.Module):
    """Classifies (u, v, |u - v|) of the two mean-pooled sentence embeddings."""

    def __init__(self, dim, num_labels):
        super().__init__()
        self.classifier = nn.Linear(3 * dim, num_labels)
        self.loss_fct = nn.CrossEntropyLoss()

    def forward(self, u, v, labels):
        logits = self.classifier(torch.cat([u, v, (u - v).abs()], dim=-1))
        return self.loss_fct(logits, labels)


class PairTrainer(Trainer):
    def __init__(self, *args, loss_module=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_module = loss_module

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        u = model(input_ids=inputs["a_ids"]).last_hidden_state.mean(dim=1)
        v = model(input_ids=inputs["b_ids"]).last_hidden_state.mean(dim=1)
        loss = self.loss_module(u, v, inputs["labels"])
        return (loss, {"u": u, "v": v}) if return_outputs else loss


train_dataset = PairDataset(96)
softmax_loss = SoftmaxPairLoss(HIDDEN, 3)
classifier_before = softmax_loss.classifier.weight.detach().clone()

# %% gradwatch
args = TrainingArguments(output_dir=tempfile.mkdtemp(), num_train_epochs=3, per_device_train_batch_size=16,
                         learning_rate=2e-3, warmup_steps=2, logging_strategy="no", save_strategy="no",
                         report_to=[], use_cpu=True, disable_tqdm=True, dataloader_num_workers=0,
                         remove_unused_columns=False)
trainer = PairTrainer(model=encoder, args=args, train_dataset=train_dataset, loss_module=softmax_loss)  # root-cause
trainer.remove_callback(PrinterCallback)
result = trainer.train()  # related
moved = (softmax_loss.classifier.weight.detach() - classifier_before).abs().max().item()
print(f"trained {result.global_step} steps, final training loss {result.training_loss:.4f}")
print(f"largest change of a classifier weight: {moved:.6f}")
