# source: https://github.com/isayev/ReLeaSE/issues/39
# bug-class: silent-cut/item-rewrapped-loss
# symptom: no error; every layer's .grad is None after rl_loss.backward(), optimizer.step() changes nothing and the average reward never improves
# diagnosis: the policy-gradient loss is accumulated from `log_probs[0, top_i].item() * discounted_reward`, i.e. Python floats; re-wrapping the sum in `torch.tensor(..., requires_grad=True)` makes a fresh leaf, so nothing reaches the generator; keep `log_probs[0, top_i]` as a tensor
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(39)

ALPHABET = ["<", ">", "C", "N", "O", "c", "1", "="]
CHAR2IDX = {c: i for i, c in enumerate(ALPHABET)}
MAX_LEN = 12


def get_reward(smiles):
    """Toy property: reward carbon-rich strings, nothing for empty ones."""
    if not smiles:
        return 0.0
    return 1.0 + 4.0 * smiles.count("C") / len(smiles)


# %%
class CharGenerator(nn.Module):
    def __init__(self, hidden=32):
        super().__init__()
        self.embed = nn.Embedding(len(ALPHABET), 16)
        self.rnn = nn.GRUCell(16, hidden)
        self.out = nn.Linear(hidden, len(ALPHABET))
        self.hidden_size = hidden

    def init_hidden(self):
        return torch.zeros(1, self.hidden_size)

    def forward(self, char_idx, hidden):
        hidden = self.rnn(self.embed(char_idx.view(1)), hidden)
        return self.out(hidden), hidden

    @torch.no_grad()
    def sample(self):
        hidden, idx, chars = self.init_hidden(), torch.tensor(CHAR2IDX["<"]), []
        for _ in range(MAX_LEN):
            logits, hidden = self(idx, hidden)
            idx = torch.multinomial(F.softmax(logits, dim=1), 1).view(())
            if ALPHABET[idx] == ">":
                break
            chars.append(ALPHABET[idx])
        return "<" + "".join(chars) + ">"


generator = CharGenerator()
optimizer = torch.optim.Adam(generator.parameters(), lr=5e-3)


# %% gradwatch
def policy_gradient(n_batch=6, gamma=0.97):
    rl_loss, total_reward = 0, 0
    optimizer.zero_grad()
    for _ in range(n_batch):
        trajectory = generator.sample()
        reward = get_reward(trajectory[1:-1])
        total_reward += reward
        discounted_reward = reward
        traj_input = torch.tensor([CHAR2IDX[c] for c in trajectory])
        hidden = generator.init_hidden()
        for p in range(len(trajectory) - 1):
            output, hidden = generator(traj_input[p], hidden)
            log_probs = F.log_softmax(output, dim=1)
            top_i = traj_input[p + 1]
            rl_loss -= log_probs[0, top_i].item() * discounted_reward  # root-cause
            discounted_reward = discounted_reward * gamma
    rl_loss = torch.tensor(rl_loss / n_batch, requires_grad=True)
    rl_loss.backward()
    optimizer.step()  # related
    return total_reward / n_batch, rl_loss.item()


for it in range(15):
    reward, loss = policy_gradient()
    if it % 5 == 0:
        print(f"iter {it:2d}: mean reward {reward:.3f}  rl loss {loss:.3f}  "
              f"out.weight.grad is None: {generator.out.weight.grad is None}")
