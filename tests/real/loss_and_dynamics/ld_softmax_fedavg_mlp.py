# source: https://github.com/shaoxiongji/federated-learning/issues/9
# bug-class: loss/double-softmax
# symptom: the clients' cross-entropy loss only creeps from 2.28 to 1.84 in six rounds (it can never go below about 1.46) while the same MLP returning logits reaches 0.07; no error
# diagnosis: `MLP.forward` ends in `nn.Softmax`, and `nn.CrossEntropyLoss` applies log-softmax again to those probabilities, so the loss is squashed and its gradients shrink; return the logits and apply softmax only for predictions
# %%
import copy

import torch
import torch.nn as nn

torch.manual_seed(7)

N_CLIENTS = 4
N_CLASSES = 10
DIM = 48


def make_data(n_per_client=160, n_test=320):
    centers = torch.randn(N_CLASSES, DIM) * 1.5
    def sample(n):
        y = torch.randint(0, N_CLASSES, (n,))
        return centers[y] + torch.randn(n, DIM), y
    clients = [sample(n_per_client) for _ in range(N_CLIENTS)]
    return clients, sample(n_test)


class MLP(nn.Module):
    def __init__(self, dim_in, dim_hidden, dim_out):
        super().__init__()
        self.layer_input = nn.Linear(dim_in, dim_hidden)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(0.2)
        self.layer_hidden = nn.Linear(dim_hidden, dim_out)
        self.softmax = nn.Softmax(dim=1)  # root-cause

    def forward(self, x):
        x = self.dropout(self.relu(self.layer_input(x)))
        x = self.layer_hidden(x)
        return self.softmax(x)  # root-cause


client_data, test_data = make_data()
net_glob = MLP(DIM, 64, N_CLASSES)


# %% gradwatch
class LocalUpdate:
    def __init__(self, data, local_ep=2, local_bs=32, lr=0.05):
        self.x, self.y = data
        self.local_ep, self.local_bs, self.lr = local_ep, local_bs, lr
        self.loss_func = nn.CrossEntropyLoss()

    def train(self, net):
        net.train()
        optimizer = torch.optim.SGD(net.parameters(), lr=self.lr, momentum=0.5)
        epoch_loss = []
        for _ in range(self.local_ep):
            batch_loss = []
            for i in range(0, len(self.x), self.local_bs):
                xb, yb = self.x[i:i + self.local_bs], self.y[i:i + self.local_bs]
                net.zero_grad()
                log_probs = net(xb)
                loss = self.loss_func(log_probs, yb)  # related
                loss.backward()
                optimizer.step()
                batch_loss.append(loss.item())
            epoch_loss.append(sum(batch_loss) / len(batch_loss))
        return net.state_dict(), sum(epoch_loss) / len(epoch_loss)


def fed_avg(weights):
    w_avg = copy.deepcopy(weights[0])
    for k in w_avg:
        for w in weights[1:]:
            w_avg[k] += w[k]
        w_avg[k] = w_avg[k] / len(weights)
    return w_avg


def test_img(net, data):
    net.eval()
    x, y = data
    with torch.no_grad():
        pred = net(x).argmax(dim=1)
    return (pred == y).float().mean().item()


for rnd in range(6):
    local_weights, local_losses = [], []
    for idx in range(N_CLIENTS):
        local = LocalUpdate(client_data[idx])
        w, loss = local.train(copy.deepcopy(net_glob))
        local_weights.append(w)
        local_losses.append(loss)
    net_glob.load_state_dict(fed_avg(local_weights))
    avg_loss = sum(local_losses) / len(local_losses)
    print(f"round {rnd}: avg local loss {avg_loss:.3f}, test acc {test_img(net_glob, test_data):.3f}")
