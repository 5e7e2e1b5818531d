# source: https://github.com/pytorch/examples/pull/779
# bug-class: backward-error/inplace-leaf
# symptom: the manual SGD update raises "a leaf Variable that requires grad is being used in an in-place operation" right after the first backward()
# diagnosis: `p.add_(p.grad, alpha=-lr)` updates the parameter (a leaf that requires grad) in place while grad mode is on; update `p.data` or do the loop under `torch.no_grad()`
# expect-error: RuntimeError
# %%
import math

import torch
import torch.nn as nn

torch.manual_seed(1111)

NTOKENS = 40
BPTT = 12
BATCH = 8


def batchify(data, bsz):
    nbatch = data.size(0) // bsz
    return data[: nbatch * bsz].view(bsz, -1).t().contiguous()


def get_batch(source, i):
    seq_len = min(BPTT, len(source) - 1 - i)
    return source[i:i + seq_len], source[i + 1:i + 1 + seq_len].reshape(-1)


corpus = torch.randint(0, NTOKENS, (2400,))
train_data = batchify(corpus[:2000], BATCH)
val_data = batchify(corpus[2000:], BATCH)


class RNNModel(nn.Module):
    def __init__(self, ntoken, ninp=32, nhid=32, nlayers=1):
        super().__init__()
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers)
        self.decoder = nn.Linear(nhid, ntoken)
        self.nlayers, self.nhid = nlayers, nhid

    def forward(self, x, hidden):
        output, hidden = self.rnn(self.encoder(x), hidden)
        return self.decoder(output).view(-1, self.decoder.out_features), hidden

    def init_hidden(self, bsz):
        w = next(self.parameters())
        return (w.new_zeros(self.nlayers, bsz, self.nhid), w.new_zeros(self.nlayers, bsz, self.nhid))


def repackage_hidden(h):
    return tuple(v.detach() for v in h)


# %% gradwatch
model = RNNModel(NTOKENS)
criterion = nn.NLLLoss()
log_softmax = nn.LogSoftmax(dim=1)


def evaluate(source):
    model.eval()
    total, hidden = 0.0, model.init_hidden(BATCH)
    with torch.no_grad():
        for i in range(0, source.size(0) - 1, BPTT):
            data, targets = get_batch(source, i)
            output, hidden = model(data, hidden)
            total += len(data) * criterion(log_softmax(output), targets).item()
    return total / (len(source) - 1)


def train(lr, clip=0.25):
    model.train()
    hidden = model.init_hidden(BATCH)
    for batch, i in enumerate(range(0, train_data.size(0) - 1, BPTT)):
        data, targets = get_batch(train_data, i)
        hidden = repackage_hidden(hidden)
        model.zero_grad()
        output, hidden = model(data, hidden)
        loss = criterion(log_softmax(output), targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        for p in model.parameters():
            p.add_(p.grad, alpha=-lr)  # root-cause
        if batch % 5 == 0:
            print(f"batch {batch} loss {loss.item():.3f}")


lr = 20.0
for epoch in range(1, 3):
    train(lr)
    val_loss = evaluate(val_data)
    print(f"epoch {epoch} valid loss {val_loss:.3f} ppl {math.exp(val_loss):.2f}")
    lr /= 4.0
