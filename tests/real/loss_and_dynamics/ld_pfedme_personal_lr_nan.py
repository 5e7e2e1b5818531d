# source: https://github.com/CharlieDinh/pFedMe/issues/11
# bug-class: dynamics/learning-rate-too-high-nan
# symptom: the users' training loss grows round after round and becomes nan; the global accuracy collapses; no error
# diagnosis: the personal learning rate (0.2) times the proximal weight lamda (15) is above 2, so each inner step of the personalized optimizer overshoots the Moreau-envelope problem and the personalized weights grow geometrically until the logits overflow; use a smaller personal learning rate (the paper's 0.09 or less)
# %%
import copy

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.optim import Optimizer

torch.manual_seed(3)

N_USERS, DIM, N_CLASSES = 5, 60, 10
config = dict(learning_rate=0.005, personal_learning_rate=0.2, lamda=15.0, K=5, local_epochs=1, batch_size=20)  # root-cause


def make_users(n=60):
    centers = torch.randn(N_CLASSES, DIM)
    users = []
    for u in range(N_USERS):
        y = torch.randint(0, N_CLASSES, (n,))
        users.append((centers[y] + 0.8 * torch.randn(n, DIM) + 0.3 * u, y))
    return users


class DNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(DIM, 32)
        self.fc2 = nn.Linear(32, N_CLASSES)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


class PersonalizedOptimizer(Optimizer):
    def __init__(self, params, lr, lamda, mu=0.001):
        super().__init__(params, dict(lr=lr, lamda=lamda, mu=mu))

    @torch.no_grad()
    def step(self, local_weights):
        for group in self.param_groups:
            for p, w_local in zip(group["params"], local_weights):
                p.add_(p.grad + group["lamda"] * (p - w_local) + group["mu"] * p, alpha=-group["lr"])


users = make_users()


# %% gradwatch
class UserpFedMe:
    def __init__(self, data, server_model):
        self.x, self.y = data
        self.model = copy.deepcopy(server_model)
        self.local_model = [p.detach().clone() for p in self.model.parameters()]
        self.optimizer = PersonalizedOptimizer(self.model.parameters(), lr=config["personal_learning_rate"], lamda=config["lamda"])

    def set_parameters(self, server_model):
        for p, w_local, w_server in zip(self.model.parameters(), self.local_model, server_model.parameters()):
            p.data.copy_(w_server.data)
            w_local.copy_(w_server.data)

    def train(self):
        self.model.train()
        losses = []
        bs = config["batch_size"]
        for _ in range(config["local_epochs"]):
            for i in range(0, len(self.x), bs):
                xb, yb = self.x[i:i + bs], self.y[i:i + bs]
                for _ in range(config["K"]):
                    self.optimizer.zero_grad()
                    loss = F.cross_entropy(self.model(xb), yb)
                    loss.backward()
                    self.optimizer.step(self.local_model)  # related
                for p, w_local in zip(self.model.parameters(), self.local_model):
                    w_local.add_(w_local - p.detach(), alpha=-config["lamda"] * config["learning_rate"])
                losses.append(loss.item())
        return sum(losses) / len(losses)


def aggregate(server_model, user_list, beta=1.0):
    with torch.no_grad():
        for k, p in enumerate(server_model.parameters()):
            avg = sum(u.local_model[k] for u in user_list) / len(user_list)
            p.copy_((1 - beta) * p + beta * avg)


def evaluate(model):
    with torch.no_grad():
        accs = [(model(x).argmax(1) == y).float().mean().item() for x, y in users]
    return sum(accs) / len(accs)


server_model = DNN()
user_objs = [UserpFedMe(d, server_model) for d in users]
for glob_iter in range(5):
    for u in user_objs:
        u.set_parameters(server_model)
    train_loss = sum(u.train() for u in user_objs) / N_USERS
    aggregate(server_model, user_objs)
    print(f"round {glob_iter}: mean personal loss {train_loss:.4g}, global acc {evaluate(server_model):.3f}")
