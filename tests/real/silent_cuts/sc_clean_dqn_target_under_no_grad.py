# source: https://github.com/philtabor/Deep-Q-Learning-Paper-To-Code/issues/16
# bug-class: clean/target-network-no-grad
# symptom: none; the TD loss falls and the greedy policy learns to walk to the rewarding end of the chain
# diagnosis: correct: the bootstrap target `rewards + gamma * max Q_target(s')` is computed under `torch.no_grad()` from a separate target network that is only synced with `load_state_dict`; the online network is trained through `q_pred`
# %%
import random

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(16)
random.seed(16)

N_STATES, N_ACTIONS, GAMMA = 6, 2, 0.9


def env_step(state, action):
    """Chain walk: action 1 moves right, action 0 moves left; reward at the right end."""
    nxt = min(state + 1, N_STATES - 1) if action == 1 else max(state - 1, 0)
    done = nxt == N_STATES - 1
    return nxt, (1.0 if done else -0.01), done


def one_hot(states):
    return F.one_hot(torch.as_tensor(states), N_STATES).float()


# %%
class QNetwork(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(N_STATES, 32), nn.ReLU(), nn.Linear(32, N_ACTIONS))

    def forward(self, x):
        return self.net(x)


class DQNAgent:
    def __init__(self, lr=5e-3, replace=50):
        self.q_eval, self.q_next = QNetwork(), QNetwork()
        self.q_next.load_state_dict(self.q_eval.state_dict())
        self.optimizer = torch.optim.Adam(self.q_eval.parameters(), lr=lr)
        self.memory, self.learn_steps, self.replace = [], 0, replace

    def choose_action(self, state, epsilon):
        if random.random() < epsilon:
            return random.randrange(N_ACTIONS)
        with torch.no_grad():
            return self.q_eval(one_hot([state])).argmax(dim=1).item()

    def learn(self, batch_size=32):
        if len(self.memory) < batch_size:
            return None
        batch = random.sample(self.memory, batch_size)
        states, actions, rewards, next_states, dones = map(list, zip(*batch))
        q_pred = self.q_eval(one_hot(states)).gather(1, torch.tensor(actions).unsqueeze(1)).squeeze(1)
        with torch.no_grad():
            q_next = self.q_next(one_hot(next_states)).max(dim=1).values
            q_next[torch.tensor(dones)] = 0.0
            q_target = torch.tensor(rewards) + GAMMA * q_next
        loss = F.mse_loss(q_pred, q_target)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.learn_steps += 1
        if self.learn_steps % self.replace == 0:
            self.q_next.load_state_dict(self.q_eval.state_dict())
        return loss.item()


# %% gradwatch
agent = DQNAgent()
for episode in range(60):
    state, done, steps, loss = 0, False, 0, None
    epsilon = max(0.05, 1.0 - episode / 30)
    while not done and steps < 30:
        action = agent.choose_action(state, epsilon)
        nxt, reward, done = env_step(state, action)
        agent.memory = (agent.memory + [(state, action, reward, nxt, done)])[-500:]
        loss = agent.learn() or loss
        state, steps = nxt, steps + 1
    if episode % 15 == 0 and loss is not None:
        print(f"episode {episode:2d}: steps {steps:2d}  td loss {loss:.4f}")

with torch.no_grad():
    greedy = agent.q_eval(one_hot(list(range(N_STATES)))).argmax(dim=1).tolist()
print("greedy actions per state:", greedy)
