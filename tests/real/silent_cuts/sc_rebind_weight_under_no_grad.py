# source: https://github.com/pytorch/pytorch/issues/74158
# bug-class: none-grad/rebound-parameter
# symptom: AttributeError: 'NoneType' object has no attribute 'zero_' at `w.grad.zero_()` right after the first update
# diagnosis: `w = w - lr * w.grad` inside `torch.no_grad()` rebinds `w` to a brand-new tensor without `requires_grad`, so it has no `.grad` and is no longer trained; update in place with `w -= lr * w.grad`
# expect-error: AttributeError
# %%
import torch

torch.manual_seed(3)

X = torch.tensor([1, 2, 3, 4, 5, 6], dtype=torch.float32)
Y = 2 * X + 0.5
X_VAL = torch.tensor([7, 8], dtype=torch.float32)
Y_VAL = 2 * X_VAL + 0.5


def predict(x, w, b):
    return w * x + b


def mse(y, y_pred):
    return ((y_pred - y) ** 2).mean()


def report(epoch, w, b, train_loss):
    with torch.no_grad():
        val = mse(Y_VAL, predict(X_VAL, w, b)).item()
    print(f"epoch {epoch:3d}: w = {w.item():.3f}, b = {b.item():.3f}, "
          f"train = {train_loss:.5f}, val = {val:.5f}")


# %% gradwatch
def fit(epochs=100, lr=0.01):
    w = torch.tensor(0.0, dtype=torch.float32, requires_grad=True)
    b = torch.tensor(0.0, dtype=torch.float32, requires_grad=True)
    print(f"prediction before training: f(5) = {predict(torch.tensor(5.0), w, b).item():.3f}")

    for epoch in range(1, epochs + 1):
        y_pred = predict(X, w, b)
        loss = mse(Y, y_pred)
        loss.backward()

        with torch.no_grad():
            w = w - lr * w.grad  # root-cause
            b = b - lr * b.grad  # root-cause

        w.grad.zero_()  # related
        b.grad.zero_()

        if epoch % 20 == 0:
            report(epoch, w, b, loss.item())
    return w, b


w_fit, b_fit = fit()
print(f"prediction after training: f(5) = {predict(torch.tensor(5.0), w_fit, b_fit).item():.3f}")
