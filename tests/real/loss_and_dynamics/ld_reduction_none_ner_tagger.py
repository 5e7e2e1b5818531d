# source: https://github.com/z814081807/DeepNER/issues/19
# bug-class: loss/reduction-none
# symptom: loss.backward() raises "grad can be implicitly created only for scalar outputs"
# diagnosis: the span/tag criterion is built with `nn.CrossEntropyLoss(reduction='none')`, so the model returns one loss per token instead of a scalar; keep the default `reduction='mean'` (or reduce the masked losses yourself)
# expect-error: RuntimeError
# %%
import torch
import torch.nn as nn

torch.manual_seed(2)

VOCAB, N_TAGS, SEQ = 120, 7, 16


def make_batch(n=64):
    tokens = torch.randint(1, VOCAB, (n, SEQ))
    lengths = torch.randint(8, SEQ + 1, (n,))
    mask = torch.arange(SEQ).unsqueeze(0) < lengths.unsqueeze(1)
    tokens = tokens * mask
    tags = (tokens % N_TAGS) * mask
    return tokens, mask.long(), tags


# %% gradwatch
class LstmSpanTagger(nn.Module):
    def __init__(self, vocab=VOCAB, dim=32, n_tags=N_TAGS, loss_type="ce"):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim, padding_idx=0)
        self.encoder = nn.LSTM(dim, dim, batch_first=True, bidirectional=True)
        self.mid_linear = nn.Sequential(nn.Linear(2 * dim, dim), nn.ReLU(), nn.Dropout(0.1))
        self.classifier = nn.Linear(dim, n_tags)
        reduction = "none"
        if loss_type == "ce":
            self.criterion = nn.CrossEntropyLoss(reduction=reduction)  # root-cause

    def forward(self, token_ids, attention_masks, labels=None):
        seq_out, _ = self.encoder(self.embed(token_ids))
        emissions = self.classifier(self.mid_linear(seq_out))
        if labels is None:
            return emissions
        active = attention_masks.view(-1) == 1
        active_logits = emissions.view(-1, emissions.size(-1))[active]
        active_labels = labels.view(-1)[active]
        return self.criterion(active_logits, active_labels)


def train(model, optimizer, batches, epochs=2):
    for epoch in range(epochs):
        model.train()
        for step, (tokens, masks, tags) in enumerate(batches):
            model.zero_grad()
            loss = model(tokens, masks, tags)
            loss.backward()  # related
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        print(f"epoch {epoch}: last loss {loss.item():.4f}")


batches = [make_batch() for _ in range(4)]
model = LstmSpanTagger()
optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
train(model, optimizer, batches)
