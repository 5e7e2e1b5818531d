# source: https://github.com/pytorch/tutorials/pull/546
# bug-class: clean/manual-sgd-under-no-grad
# symptom: none; the loss falls steadily without any torch.optim optimizer
# diagnosis: correct: `w1` and `w2` are leaves created with requires_grad=True, the in-place updates `w -= learning_rate * w.grad` run under `torch.no_grad()`, and the gradients are zeroed after each update
# %%
import torch

torch.manual_seed(0)
dtype = torch.float

N, D_in, H, D_out = 64, 100, 32, 10


def make_regression(n):
    x = torch.randn(n, D_in, dtype=dtype)
    true_w = torch.randn(D_in, D_out, dtype=dtype) * 0.1
    return x, torch.tanh(x @ true_w) + 0.01 * torch.randn(n, D_out)


x, y = make_regression(N)
x_val, y_val = make_regression(32)

# %%
# Tensors for the data need no gradient; the weights do.
w1 = torch.randn(D_in, H, dtype=dtype, requires_grad=True)
w2 = torch.randn(H, D_out, dtype=dtype, requires_grad=True)


def predict(inp):
    return inp.mm(w1).clamp(min=0).mm(w2)


def evaluate():
    with torch.no_grad():
        return (predict(x_val) - y_val).pow(2).sum().item() / len(x_val)


# %% gradwatch
def train(params, steps=150, learning_rate=1e-5):
    for t in range(steps):
        y_pred = predict(x)
        loss = (y_pred - y).pow(2).sum()
        loss.backward()

        # Update the weights by hand; autograd must not record this.
        with torch.no_grad():
            for w in params:
                w -= learning_rate * w.grad
                w.grad.zero_()

        if t % 30 == 29:
            print(f"step {t + 1}: train loss {loss.item():.2f}, val loss per sample {evaluate():.3f}")


train([w1, w2])
