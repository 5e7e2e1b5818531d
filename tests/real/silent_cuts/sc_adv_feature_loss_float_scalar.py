# source: https://github.com/guopengf/FL-MRCM/issues/10
# bug-class: silent-cut/float-loss-term
# symptom: no error; the reconstruction loss goes down but the adversarial alignment term does nothing: the feature discriminator learns to tell the two domains apart (accuracy climbs from 0.5 to above 0.9)
# diagnosis: `loss_adv_g = (...).detach().item()` turns the generator-side adversarial loss into a Python float before it is added to the L1 loss, so it carries no gradient to the encoder; the `.detach().item()` belongs only in the logging `append`
# %%
import torch
import torch.nn as nn

torch.manual_seed(10)

DIM, LATENT, BATCH = 16, 8, 32


def make_domain(n, shift, scale):
    clean = torch.randn(n, DIM)
    observed = clean * scale + shift + 0.1 * torch.randn(n, DIM)
    return observed, clean


src_x, src_y = make_domain(256, 0.0, 1.0)
tgt_x, tgt_y = make_domain(256, 1.5, 0.6)


def set_requires_grad(nets, requires_grad=False):
    for net in nets if isinstance(nets, list) else [nets]:
        for param in net.parameters():
            param.requires_grad = requires_grad


# %%
class ReconNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(DIM, 32), nn.ReLU(), nn.Linear(32, LATENT))
        self.decoder = nn.Sequential(nn.Linear(LATENT, 32), nn.ReLU(), nn.Linear(32, DIM))

    def forward(self, x):
        z = self.encoder(x)
        return self.decoder(z), z


net = ReconNet()
net_fd = nn.Sequential(nn.Linear(LATENT, 16), nn.ReLU(), nn.Linear(16, 1))
optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
optimizer_fd = torch.optim.Adam(net_fd.parameters(), lr=1e-3)
l1, adv = nn.L1Loss(), nn.BCEWithLogitsLoss()


def domain_accuracy():
    with torch.no_grad():
        p_src = net_fd(net(src_x)[1]) > 0
        p_tgt = net_fd(net(tgt_x)[1]) <= 0
        return torch.cat([p_src, p_tgt]).float().mean().item()


# %% gradwatch
def train_epoch(epoch):
    log_l1, log_adv = [], []
    for i in range(0, len(src_x), BATCH):
        output, z = net(src_x[i:i + BATCH])
        _, z_t = net(tgt_x[i:i + BATCH])
        src_code, tgt_code = torch.ones(len(z), 1), torch.zeros(len(z_t), 1)

        # update the feature discriminator
        set_requires_grad(net_fd, True)
        optimizer_fd.zero_grad()
        df_loss = (adv(net_fd(z.detach()), src_code) + adv(net_fd(z_t.detach()), tgt_code)) / 2
        df_loss.backward()
        optimizer_fd.step()

        # update the reconstruction network: fit the source, fool the discriminator
        set_requires_grad(net_fd, False)
        optimizer.zero_grad()
        df_loss_src = adv(net_fd(z), 1 - src_code)
        df_loss_tgt = adv(net_fd(z_t), 1 - tgt_code)
        loss_adv_g = ((df_loss_src + df_loss_tgt) / 2).detach().item()  # root-cause
        log_adv.append(loss_adv_g)
        L1_loss = l1(output, src_y[i:i + BATCH])
        log_l1.append(L1_loss.detach().item())
        loss = L1_loss + loss_adv_g
        loss.backward()
        optimizer.step()
    print(f"epoch {epoch}: L1 {sum(log_l1) / len(log_l1):.4f}  adv_g {sum(log_adv) / len(log_adv):.4f}  "
          f"domain accuracy of D on features {domain_accuracy():.3f}")


for epoch in range(8):
    train_epoch(epoch)
