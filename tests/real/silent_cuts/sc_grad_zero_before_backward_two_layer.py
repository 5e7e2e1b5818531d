# source: https://github.com/jcjohnson/pytorch-examples/issues/7
# bug-class: none-grad/zero-before-first-backward
# symptom: AttributeError: 'NoneType' object has no attribute 'data' on the first iteration of the manual-autograd training loop
# diagnosis: the loop clears `w1.grad.data` at the top of every iteration, before any `backward()` has run, so on the first pass `w1.grad` is still None; the gradients must be zeroed after the weight update instead
# expect-error: AttributeError
# %%
import torch

torch.manual_seed(0)

N, D_IN, HIDDEN, D_OUT = 64, 100, 32, 10
LEARNING_RATE = 1e-6
STEPS = 200


def make_data(n):
    x = torch.randn(n, D_IN)
    teacher = torch.randn(D_IN, D_OUT) / D_IN ** 0.5
    y = x.mm(teacher) + 0.05 * torch.randn(n, D_OUT)
    return x, y


x_train, y_train = make_data(N)
x_val, y_val = make_data(N // 2)

# %%
w1 = torch.randn(D_IN, HIDDEN, requires_grad=True)
w2 = torch.randn(HIDDEN, D_OUT, requires_grad=True)


def forward(x, w1, w2):
    h = x.mm(w1).clamp(min=0)
    return h.mm(w2)


def evaluate(x, y, w1, w2):
    with torch.no_grad():
        return (forward(x, w1, w2) - y).pow(2).sum().item()


# %% gradwatch
def train(w1, w2, steps, lr):
    history = []
    for t in range(steps):
        # clear last iteration's gradients before the new forward pass
        w1.grad.data.zero_()  # root-cause
        w2.grad.data.zero_()  # root-cause

        y_pred = forward(x_train, w1, w2)
        loss = (y_pred - y_train).pow(2).sum()
        loss.backward()

        with torch.no_grad():
            w1 -= lr * w1.grad
            w2 -= lr * w2.grad

        history.append(loss.item())
        if t % 50 == 0:
            print(f"step {t:3d}  train {loss.item():12.2f}  val {evaluate(x_val, y_val, w1, w2):12.2f}")
    return history


losses = train(w1, w2, STEPS, LEARNING_RATE)
print(f"final training loss {losses[-1]:.2f}")
