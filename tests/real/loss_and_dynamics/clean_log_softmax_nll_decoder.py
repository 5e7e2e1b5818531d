# source: https://github.com/mjc92/gettothepoint/issues/8
# bug-class: clean/log-softmax-nll
# symptom: none: the decoder ends in `log_softmax`, the loss is `NLLLoss` and the perplexity goes down
# diagnosis: correct: `NLLLoss` expects log-probabilities, so `log_softmax` + `NLLLoss` is the right pairing (equivalent to `CrossEntropyLoss` on logits); probabilities for decoding are taken with `.exp()` outside the loss
# %%
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(92)

VOCAB, PAD = 24, 0


def make_corpus(n=96, min_len=6, max_len=14):
    seqs = []
    for _ in range(n):
        length = torch.randint(min_len, max_len + 1, (1,)).item()
        start = torch.randint(1, VOCAB, (1,)).item()
        seqs.append([(start + 3 * k) % (VOCAB - 1) + 1 for k in range(length)])
    batch = torch.full((n, max_len), PAD, dtype=torch.long)
    for i, s in enumerate(seqs):
        batch[i, :len(s)] = torch.tensor(s)
    return batch


class Decoder(nn.Module):
    def __init__(self, vocab=VOCAB, emb=16, hidden=48):
        super().__init__()
        self.embedding = nn.Embedding(vocab, emb, padding_idx=PAD)
        self.gru = nn.GRU(emb, hidden, batch_first=True)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, tokens, hidden=None):
        output, hidden = self.gru(self.embedding(tokens), hidden)
        return F.log_softmax(self.out(output), dim=-1), hidden


corpus = make_corpus()


# %% gradwatch
decoder = Decoder()
criterion = nn.NLLLoss(ignore_index=PAD)
optimizer = torch.optim.Adam(decoder.parameters(), lr=5e-3)


def run_epoch(bs=16):
    decoder.train()
    total = 0.0
    for i in range(0, len(corpus), bs):
        batch = corpus[i:i + bs]
        inputs, targets = batch[:, :-1], batch[:, 1:]
        log_probs, _ = decoder(inputs)
        loss = criterion(log_probs.reshape(-1, VOCAB), targets.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item()
    return total / math.ceil(len(corpus) / bs)


@torch.no_grad()
def greedy(start, steps=6):
    decoder.eval()
    token, hidden, out = torch.tensor([[start]]), None, [start]
    for _ in range(steps):
        log_probs, hidden = decoder(token, hidden)
        token = log_probs.exp()[:, -1].argmax(dim=-1, keepdim=True)
        out.append(token.item())
    return out


for epoch in range(8):
    nll = run_epoch()
    print(f"epoch {epoch}: nll {nll:.3f}, perplexity {math.exp(nll):.2f}")
print("greedy from 5:", greedy(5))
