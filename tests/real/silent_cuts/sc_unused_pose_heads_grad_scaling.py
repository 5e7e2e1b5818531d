# source: https://github.com/MichiganCOG/ViP/issues/21
# bug-class: none-grad/unused-parameters
# symptom: TypeError: unsupported operand type(s) for *=: 'NoneType' and 'float' where the pseudo-batch loop rescales every parameter's gradient
# diagnosis: only the yaw head's output enters the loss, so the pitch and roll heads never get a gradient and their `.grad` stays None; the rescaling loop needs `if param.grad is not None` (or the unused heads must be left out of the model/loss)
# expect-error: TypeError
# %%
import torch
import torch.nn as nn

torch.manual_seed(21)

ARGS = {"batch_size": 16, "psuedo_batch_loop": 4, "epochs": 3, "lr": 1e-2, "regress": ("yaw",)}


def make_head_pose_data(n):
    feats = torch.randn(n, 20)
    angles = torch.stack([feats[:, 0] - feats[:, 1], 0.5 * feats[:, 2], feats[:, 3].tanh()], dim=1)
    return feats, angles


train_feats, train_angles = make_head_pose_data(256)
val_feats, val_angles = make_head_pose_data(64)


# %%
class PoseRegressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU())
        self.yaw = nn.Linear(32, 1)
        self.pitch = nn.Linear(32, 1)
        self.roll = nn.Linear(32, 1)

    def forward(self, x):
        h = self.backbone(x)
        return {"yaw": self.yaw(h), "pitch": self.pitch(h), "roll": self.roll(h)}


model = PoseRegressor()
optimizer = torch.optim.SGD(model.parameters(), lr=ARGS["lr"], momentum=0.9)
criterion = nn.MSELoss()
INDEX = {"yaw": 0, "pitch": 1, "roll": 2}


def compute_loss(outputs, angles):
    # experiment: regress yaw only
    return sum(criterion(outputs[k].squeeze(1), angles[:, INDEX[k]]) for k in ARGS["regress"])  # root-cause


def validate():
    model.eval()
    with torch.no_grad():
        out = model(val_feats)
        err = {k: (out[k].squeeze(1) - val_angles[:, i]).abs().mean().item() for k, i in INDEX.items()}
    model.train()
    return err


# %% gradwatch
def train_epoch(epoch):
    bs, loops = ARGS["batch_size"], ARGS["psuedo_batch_loop"]
    optimizer.zero_grad()
    for step, start in enumerate(range(0, len(train_feats), bs)):
        out = model(train_feats[start:start + bs])
        loss = compute_loss(out, train_angles[start:start + bs])
        loss.backward()
        if (step + 1) % loops == 0:
            for param in model.parameters():
                param.grad *= 1. / float(loops * bs)  # related
            optimizer.step()
            optimizer.zero_grad()
    print(f"epoch {epoch}: last loss {loss.item():.4f}  val MAE {validate()}")


for epoch in range(ARGS["epochs"]):
    train_epoch(epoch)
