import torch

# Data
X = torch.tensor([[1.0], [2.0], [3.0]])
y = torch.tensor([[2.0], [4.0], [6.0]])

# Model parameters (INCORRECT - no gradient tracking)
w = torch.randn(1, 1)
b = torch.randn(1, 1)

# Learning rate and optimizer
learning_rate = 0.01
optimizer = torch.optim.SGD([w, b], lr=learning_rate)

# Loss function
def mse_loss(y_pred, y_true):
    return torch.mean((y_pred - y_true) ** 2)


# Training loop
epochs = 10
for epoch in range(epochs):
    # Forward pass
    y_pred = torch.matmul(X, w) + b

    # Compute the loss
    loss = mse_loss(y_pred, y)

    # Backward pass
    loss.backward()

    # Update parameters
    optimizer.step()

    # Zero gradients
    optimizer.zero_grad()

    print(f'Epoch: {epoch+1}, Loss: {loss.item()}')

print("Final weights:",w)
print("Final bias:",b)
