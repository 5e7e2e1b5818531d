# source: https://github.com/z814081807/DeepNER/issues/19
# bug-class: backward-error/non-scalar-loss
# symptom: loss.backward() raises "grad can be implicitly created only for scalar outputs"
# diagnosis: the span model's criterion is built with `reduction='none'`, so `start_loss + end_loss` is one loss per active token, not a scalar; use the default mean reduction (or reduce the masked vector before backward)
# expect-error: RuntimeError
# %%
import torch
import torch.nn as nn

torch.manual_seed(4)

VOCAB, N_TYPES, SEQ = 100, 5, 20


def make_batches(n_batches=6, batch_size=8):
    batches = []
    for _ in range(n_batches):
        token_ids = torch.randint(1, VOCAB, (batch_size, SEQ))
        lengths = torch.randint(10, SEQ + 1, (batch_size,))
        attention_mask = (torch.arange(SEQ)[None, :] < lengths[:, None]).long()
        start_ids = torch.where(token_ids % 7 == 0, token_ids % N_TYPES, torch.zeros_like(token_ids))
        end_ids = torch.where(token_ids % 11 == 0, token_ids % N_TYPES, torch.zeros_like(token_ids))
        batches.append((token_ids, attention_mask, start_ids * attention_mask, end_ids * attention_mask))
    return batches


train_batches = make_batches()
dev_batches = make_batches(2)


# %%
class SpanModel(nn.Module):
    def __init__(self, hidden=32, loss_type="ce"):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, hidden)
        self.encoder = nn.LSTM(hidden, hidden, batch_first=True, bidirectional=True)
        self.start_fc = nn.Linear(2 * hidden, N_TYPES)
        self.end_fc = nn.Linear(2 * hidden, N_TYPES)
        reduction = "none"  # root-cause
        if loss_type == "ce":
            self.criterion = nn.CrossEntropyLoss(reduction=reduction)  # root-cause

    def forward(self, token_ids, attention_mask, start_ids=None, end_ids=None):
        seq_out, _ = self.encoder(self.embed(token_ids))
        start_logits, end_logits = self.start_fc(seq_out), self.end_fc(seq_out)
        if start_ids is None:
            return start_logits, end_logits
        active = attention_mask.view(-1) == 1
        start_loss = self.criterion(start_logits.view(-1, N_TYPES)[active], start_ids.view(-1)[active])
        end_loss = self.criterion(end_logits.view(-1, N_TYPES)[active], end_ids.view(-1)[active])
        return start_loss + end_loss


def span_f1(model, batches):
    model.eval()
    hit = total = 0
    with torch.no_grad():
        for token_ids, mask, start_ids, _ in batches:
            start_logits, _ = model(token_ids, mask)
            pred = start_logits.argmax(-1) * mask
            hit += ((pred == start_ids) & (start_ids > 0)).sum().item()
            total += (start_ids > 0).sum().item()
    model.train()
    return hit / max(total, 1)


# %% gradwatch
def train(model, epochs=3):
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for epoch in range(epochs):
        for step, (token_ids, mask, start_ids, end_ids) in enumerate(train_batches):
            loss = model(token_ids, mask, start_ids, end_ids)
            model.zero_grad()
            loss.backward()  # related
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        print(f"epoch {epoch} loss {loss.item():.4f} dev recall {span_f1(model, dev_batches):.3f}")


train(SpanModel())
