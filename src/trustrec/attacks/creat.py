"""CREAT: constrained reinforcement-driven profile pollution (Su et al., AAAI 2026).

A *perturbation masker* ``M_ψ`` picks, step by step, ``K`` positions of a training window
where the target ``v*`` replaces the item, ``s'(i) = s'(i−1) ⊙ (1 − m(i)) + v*·m(i)``.
It is trained by reinforcement learning against the clean victim (white-box, or a
surrogate), whose encoder ``φ_rec`` (the state that scores the next item,
:meth:`~trustrec.models.sequential.SequentialRecommender.encode`) gives every reward:

* **Pattern inversion rewards** (upper level).
  ``R_dir(i) = Σ_{j≤i} [D(φ(s'[:t_j]), φ(v*)) + D(φ(v*), φ(s'[t_j+1:]))]``, Euclidean
  ``D`` (the paper's; its code uses ``(1 − cos)/2``): the target goes where the contexts
  before and after it are far from it. ``R_div(i) = log det G_y``, the Gram matrix of the
  unit-normalised ``φ`` of the sub-sequences between target positions (the paper's log;
  its code drops the log), plus ``1e-6·I`` for stability. Two adjacent targets leave an
  empty sub-sequence between them: it counts as a zero vector (``log det`` ≈ −13.8 per
  empty one), not as a missing one. Dropping it instead (the definition read literally)
  makes fewer segments score higher, since ``det G ≤ 1`` for unit vectors, and the masker
  learned to bunch the ``K`` targets together, one context for all of them.
* **Distribution consistency reward** (lower level). ``R_dist = −DLOT(X_orig, X_pert)``:
  ``X = [φ(s); φ(s[t:t+k]) for every k-gram]``, the sequence and its k-gram patterns, and
  DLOT the unbalanced co-optimal transport of Tran et al. (AAAI 2023), POT's
  ``unbalanced_co_optimal_transport2`` (KL marginals ``reg_marginals``, unregularised
  ``mm`` solver, ``ot_iters`` outer iterations as the code's ``OT_MAX_ITER = 20``, and
  ``ot_inner_iters = 30`` inner ones, where POT's 500 cost ~0.3 s per call for the same
  value to 1e-6 on MovieLens windows): two plans,
  over samples (the sequence and its patterns) and over features, as the paper.
* **C-GRRL**, two stages. *Localisation* (``localize_epochs``): a group of ``group``
  rollouts per sequence, per-step returns ``Σ γ^τ (R_dir + R_div)`` normalised within the
  group (``Â = (r − μ_G)/(σ_G + ε)``), and the policy gradient *ascending* ``E[log π · Â]``
  (the released code's loss has the sign flipped; the notes flag it). The result is
  ``π_att``. *Constrained fine-tuning* (``constrain_epochs``): the clipped group-relative
  surrogate ``min(ρÂ, clip(ρ, 1 ± clip)Â)`` with ``ρ = π_ψ/π_att``, once with the attack
  advantages and once with the DLOT advantages, and the dynamic barrier
  ``δ = [J_dist − ρ_st − ∇J_distᵀ∇J_att]₊ / (‖∇J_dist‖² + κ)``, the paper's formula with
  ``J_dist`` the expected DLOT (a cost), so the step is ``∇J_att − δ∇J_dist``: δ grows
  with the violation and shrinks when the two gradients conflict, as the paper says.
  ``ρ_st = μ + λ_st·σ`` of the DLOT of the trajectories in the group-shared replay
  buffer. Group-shared experience replay: each sequence's last ``replay`` trajectories
  are kept, and as many are re-used per update, drawn with probability ∝ ``|Â|``
  (relative prioritized sampling); their ratio is recomputed by replaying their actions.

The polluted sequence is the trained masker's greedy rollout.

Where this departs from the paper (and why):

* ``R_dist`` is a *terminal* reward (on the final polluted window, given at step ``K``
  and reaching earlier steps through the discounted return), not one per step: one
  unregularised UCOOT costs ~80 ms on 2 cores, and ``K`` per rollout would make the
  fine-tuning ``K`` times slower. The inversion rewards stay per step.
* ``ρ_st`` uses the replay buffer's trajectories; with the current group's own mean
  (the paper's ``μ_G``, ``λ_st = 0``) ``J_dist − ρ_st`` is zero by construction.
* The masker: a GRU over ``[φ_rec(s'); the victim's item embedding (frozen); a learned
  position embedding; a changed-flag]`` per position, a linear layer to one logit per
  position, softmax over the real, unchanged positions. Adam, lr ``lr`` (the paper's
  1e-6 trains many more updates than the few sequences of a small budget give here).
* Unspecified constants: ``k = 3``-gram patterns, γ = 0.9, λ_st = 0, κ = 1e-6,
  ``reg_marginals = 1``. Insertion mode uses the positions found for replacement.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import numpy as np
import ot
import torch
from torch import nn
from tqdm.auto import tqdm

from trustrec.attacks.base import ATTACKS, Attack
from trustrec.config import (
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    typed_config,
)
from trustrec.models.sequential import SequentialRecommender
from trustrec.seeding import child_seed


@typed_config
class CREATConfig:
    """Hyper-parameters of CREAT (see the module docstring).

    Attributes:
        group: rollouts per sequence (the paper's G).
        localize_epochs: epochs of the localisation stage.
        constrain_epochs: epochs of constrained fine-tuning.
        lr: Adam learning rate of the masker.
        hidden: masker GRU units.
        kgram: pattern length ``k`` of the DLOT patterns.
        gamma: discount γ of the per-step returns.
        clip: PPO clip ε of the surrogate.
        lambda_st: λ_st of the stealth threshold ``ρ_st = μ + λ_st·σ``.
        kappa: κ of the dynamic barrier.
        reg_marginals: KL weight on the UCOOT marginals.
        ot_iters: UCOOT block-coordinate iterations.
        ot_inner_iters: iterations of each inner unbalanced transport (``mm``) solve.
        replay: trajectories per sequence kept in (and replayed from) the buffer.
        batch: sequences per update.
    """

    group: PositiveInt = 16
    localize_epochs: NonNegativeInt = 10
    constrain_epochs: NonNegativeInt = 10
    lr: PositiveFloat = 3e-3
    hidden: PositiveInt = 64
    kgram: PositiveInt = 3
    gamma: NonNegativeFloat = 0.9
    clip: PositiveFloat = 0.2
    lambda_st: float = 0.0
    kappa: PositiveFloat = 1e-6
    reg_marginals: PositiveFloat = 1.0
    ot_iters: PositiveInt = 20
    ot_inner_iters: PositiveInt = 30
    replay: NonNegativeInt = 4
    batch: PositiveInt = 64


class Masker(nn.Module):
    """The perturbation masker: one logit per position (see the module docstring)."""

    def __init__(self, dim: int, max_len: int, hidden: int) -> None:
        super().__init__()
        self.inp = nn.Linear(2 * dim + 1, hidden)
        self.position = nn.Embedding(max_len, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 1)

    def forward(self, items: torch.Tensor, seq: torch.Tensor, changed: torch.Tensor
                ) -> torch.Tensor:
        """Logits ``(n, L)`` from item embeddings ``(n, L, d)``, sequence embeddings
        ``(n, d)`` and changed flags ``(n, L)``."""
        x = torch.cat([items, seq[:, None].expand_as(items), changed[..., None].float()], -1)
        h, _ = self.gru(torch.relu(self.inp(x) + self.position.weight))
        return self.out(h).squeeze(-1)


def kept(seqs: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Left-padded windows of the kept items of each row, in order."""
    order = torch.argsort(keep.to(torch.int8), dim=1, stable=True)
    return torch.gather(seqs * keep, 1, order)


@dataclass
class Rollouts:
    """A batch of trajectories: per-step log-probabilities under the policy, actions
    (window columns) and the windows after each step."""

    logp: torch.Tensor
    actions: torch.Tensor
    states: list[torch.Tensor]


class _Env:
    """The victim's view: encodings, rewards and rollouts for one target."""

    def __init__(self, victim: SequentialRecommender, target: int, cfg: CREATConfig) -> None:
        self.victim, self.cfg = victim, cfg
        self.net = victim.trained_network()
        self.table = self.net.item.weight.detach()
        self.token = target + 1
        self.length = victim.config.max_len
        single = torch.zeros(1, self.length, dtype=torch.int64)
        single[0, -1] = self.token
        self.anchor = self.encode(single)

    def encode(self, seqs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.victim.encode(seqs, self.net)

    def rollout(self, policy: Masker, seqs: torch.Tensor, k: int,
                gen: torch.Generator | None, forced: torch.Tensor | None = None,
                greedy: bool = False) -> Rollouts:
        """``k`` steps from ``seqs``: sampled (``gen``), greedy, or ``forced`` actions."""
        seq, rows = seqs.clone(), torch.arange(len(seqs))
        changed = torch.zeros(seqs.shape, dtype=torch.bool)
        logps, acts, states = [], [], []
        for i in range(k):
            logits = policy(self.table[seq], self.encode(seq), changed)
            logits = logits.masked_fill((seq == 0) | changed, -torch.inf)
            logp = torch.log_softmax(logits, dim=-1)
            if forced is not None:
                a = forced[:, i]
            elif greedy:
                a = logp.argmax(-1)
            else:
                a = torch.multinomial(logp.detach().exp(), 1, generator=gen).squeeze(1)
            logps.append(logp[rows, a])
            acts.append(a)
            seq = seq.clone()
            seq[rows, a] = self.token
            changed = changed.clone()
            changed[rows, a] = True
            states.append(seq)
        return Rollouts(torch.stack(logps, 1), torch.stack(acts, 1), states)

    def inversion(self, roll: Rollouts) -> torch.Tensor:
        """``R_dir + R_div`` per step ``(n, k)``."""
        n, k = roll.actions.shape
        cols = torch.arange(self.length)
        out = torch.zeros(n, k)
        for i, seq in enumerate(roll.states):
            real = seq > 0
            t = roll.actions[:, :i + 1]                                       # (n, i+1)
            before = real[:, None] & (cols < t[..., None])                    # (n, i+1, L)
            after = real[:, None] & (cols > t[..., None])
            rep = seq[:, None].expand(-1, i + 1, -1)
            sides = torch.cat([kept(rep, before).flatten(0, 1), kept(rep, after).flatten(0, 1)])
            dist = (self.encode(sides) - self.anchor).norm(dim=-1).view(2, n, i + 1)
            empty = torch.cat([~before.any(-1), ~after.any(-1)]).view(2, n, i + 1)
            r_dir = dist.masked_fill(empty, 0).sum((0, 2))
            is_t = seq == self.token
            seg = torch.cumsum(is_t.long(), dim=1)                             # (n, L)
            parts = real[:, None] & ~is_t[:, None] & (seg[:, None] == torch.arange(i + 2)[:, None])
            present = parts.any(-1)                                           # (n, i+2)
            edge = torch.zeros(i + 2, dtype=torch.bool)
            edge[[0, -1]] = True
            skip = ~present & edge  # nothing before the first / after the last target
            emb = self.encode(kept(seq[:, None].expand(-1, i + 2, -1), parts).flatten(0, 1))
            unit = nn.functional.normalize(emb, dim=-1).view(n, i + 2, -1)
            unit = unit * present[..., None]  # an empty interior segment: a zero vector
            gram = unit @ unit.transpose(1, 2) + torch.diag_embed(skip.float())
            r_div = torch.logdet(gram + 1e-6 * torch.eye(i + 2))
            out[:, i] = r_dir + r_div
        return out

    def patterns(self, seqs: torch.Tensor,
                 base: tuple[torch.Tensor, torch.Tensor] | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every k-gram window of each row ``(n, L-k+1, k)`` and its encoding
        ``(n, L-k+1, d)``. With ``base`` (the same rows' clean windows and encodings),
        only the windows a perturbation changed are encoded again."""
        k = self.cfg.kgram
        n, L = seqs.shape
        starts = torch.arange(L - k + 1)
        grams = seqs[:, starts[:, None] + torch.arange(k)]
        if base is None:
            todo = torch.ones(grams.shape[:2], dtype=torch.bool)
            emb = torch.zeros(n, len(starts), self.anchor.shape[-1])
        else:
            todo = (grams != base[0]).any(-1)
            emb = base[1].clone()
        windows = torch.zeros(int(todo.sum()), L, dtype=seqs.dtype)
        windows[:, L - k:] = grams[todo]
        if len(windows):
            emb[todo] = self.encode(windows)
        return grams, emb

    def dlot(self, clean: tuple[torch.Tensor, torch.Tensor, torch.Tensor], rows: torch.Tensor,
             polluted: torch.Tensor) -> torch.Tensor:
        """DLOT ``(n,)`` between the clean ``X = [φ(s); φ(k-grams of real items)]`` of
        sequence ``rows[r]`` and the polluted window ``r``'s."""
        grams, emb, head = clean
        p_grams, p_emb = self.patterns(polluted, (grams[rows], emb[rows]))
        p_head = self.encode(polluted)
        out = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for r, row in enumerate(rows.tolist()):
                x = torch.cat([head[row:row + 1], emb[row][(grams[row] > 0).all(-1)]])
                y = torch.cat([p_head[r:r + 1], p_emb[r][(p_grams[r] > 0).all(-1)]])
                out.append(float(ot.gromov.unbalanced_co_optimal_transport2(
                    x.double().numpy(), y.double().numpy(),
                    reg_marginals=self.cfg.reg_marginals, epsilon=0,
                    max_iter=self.cfg.ot_iters, max_iter_ot=self.cfg.ot_inner_iters)))
        return torch.tensor(out)


def returns(rewards: torch.Tensor, gamma: float) -> torch.Tensor:
    """Discounted returns-to-go per step ``(n, k)``."""
    out = torch.zeros_like(rewards)
    run = torch.zeros(len(rewards))
    for t in range(rewards.shape[1] - 1, -1, -1):
        run = rewards[:, t] + gamma * run
        out[:, t] = run
    return out


def group_normalise(values: torch.Tensor, group: int) -> torch.Tensor:
    """``(v − μ_G)/(σ_G + ε)`` within each group of ``group`` consecutive rows, per step."""
    v = values.view(-1, group, *values.shape[1:])
    std = v.std(1, keepdim=True) if group > 1 else torch.ones_like(v[:, :1])
    return ((v - v.mean(1, keepdim=True)) / (std + 1e-8)).view_as(values)


@ATTACKS.register("creat")
class CREAT(Attack):
    """CREAT (see the module docstring)."""

    name = "creat"
    Config = CREATConfig

    def positions(self, victim: SequentialRecommender, windows: torch.Tensor, target: int,
                  k: int, seed: int, progress: bool) -> np.ndarray:
        """Train the masker on ``windows`` and return its greedy positions."""
        cfg = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(child_seed(seed, self.name, target))
            gen = torch.Generator().manual_seed(child_seed(seed, self.name, "rollouts"))
            env = _Env(victim, target, cfg)
            policy = Masker(env.table.shape[1], env.length, cfg.hidden)
            opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
            total = cfg.localize_epochs + cfg.constrain_epochs
            bar = tqdm(total=total, desc="creat", disable=not progress, leave=False)
            for _ in range(cfg.localize_epochs):
                for b in range(0, len(windows), cfg.batch):
                    self._localize(env, policy, opt, windows[b:b + cfg.batch], k, gen)
                bar.update()
            reference = copy.deepcopy(policy).requires_grad_(False)
            clean = (*env.patterns(windows), env.encode(windows))
            buffer: dict[int, list[tuple[torch.Tensor, float, torch.Tensor, torch.Tensor]]] = {}
            for _ in range(cfg.constrain_epochs):
                for b in range(0, len(windows), cfg.batch):
                    self._constrain(env, policy, reference, opt, windows, b, k, gen,
                                    clean, buffer)
                bar.update()
            bar.close()
            with torch.no_grad():
                return env.rollout(policy, windows, k, None, greedy=True).actions.numpy()

    def _localize(self, env: _Env, policy: Masker, opt: torch.optim.Optimizer,
                  seqs: torch.Tensor, k: int, gen: torch.Generator) -> None:
        g = self.config.group
        roll = env.rollout(policy, seqs.repeat_interleave(g, 0), k, gen)
        adv = group_normalise(returns(env.inversion(roll), self.config.gamma), g)
        loss = -(roll.logp * adv).mean()  # ascend E[log π · Â]
        opt.zero_grad()
        loss.backward()
        opt.step()

    def _constrain(self, env: _Env, policy: Masker, reference: Masker,
                   opt: torch.optim.Optimizer, windows: torch.Tensor, b: int, k: int,
                   gen: torch.Generator,
                   clean: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                   buffer: dict[int, list[tuple[torch.Tensor, float, torch.Tensor,
                                                torch.Tensor]]]) -> None:
        cfg, g = self.config, self.config.group
        seqs = windows[b:b + cfg.batch]
        idx = torch.arange(b, b + len(seqs)).repeat_interleave(g)
        start = seqs.repeat_interleave(g, 0)
        with torch.no_grad():
            roll = env.rollout(policy, start, k, gen)
            att = group_normalise(returns(env.inversion(roll), cfg.gamma), g)
            cost = env.dlot(clean, idx, roll.states[-1])
            steps = cost[:, None] * cfg.gamma ** torch.arange(k - 1, -1, -1.0)
            dist = group_normalise(steps, g)
        # group-shared replay: past trajectories of these sequences, ∝ |Â|
        starts, actions, a_att, a_dist = [start], [roll.actions], [att], [dist]
        past_costs = []
        for j, row in enumerate(range(b, b + len(seqs))):
            old = buffer.get(row, [])
            past_costs += [c for _, c, _, _ in old]
            if old:
                weight = torch.stack([x[2].abs().sum() + x[3].abs().sum() for x in old])
                pick = torch.multinomial(weight + 1e-12, min(cfg.replay, len(old)),
                                         replacement=True, generator=gen).tolist()
                for p in pick:
                    starts.append(seqs[j:j + 1])
                    actions.append(old[p][0][None])
                    a_att.append(old[p][2][None])
                    a_dist.append(old[p][3][None])
            fresh = [(roll.actions[r], float(cost[r]), att[r], dist[r])
                     for r in range(j * g, (j + 1) * g)]
            buffer[row] = (old + fresh)[-cfg.replay:] if cfg.replay else []
        start_all, act_all = torch.cat(starts), torch.cat(actions)
        adv_att, adv_dist = torch.cat(a_att), torch.cat(a_dist)
        logp = env.rollout(policy, start_all, k, None, forced=act_all).logp
        with torch.no_grad():
            ref = env.rollout(reference, start_all, k, None, forced=act_all).logp
        ratio = (logp - ref).exp()

        def surrogate(adv: torch.Tensor) -> torch.Tensor:
            clipped = ratio.clamp(1 - cfg.clip, 1 + cfg.clip)
            return torch.minimum(ratio * adv, clipped * adv).mean()

        params = [p for p in policy.parameters() if p.requires_grad]
        g_att = torch.autograd.grad(surrogate(adv_att), params, retain_graph=True)
        g_dist = torch.autograd.grad(surrogate(adv_dist), params)
        flat_att = torch.cat([x.reshape(-1) for x in g_att])
        flat_dist = torch.cat([x.reshape(-1) for x in g_dist])
        history = torch.tensor(past_costs) if past_costs else cost
        rho = history.mean() + cfg.lambda_st * (history.std() if len(history) > 1 else 0.0)
        delta = torch.clamp((cost.mean() - rho - flat_dist @ flat_att)
                            / (flat_dist @ flat_dist + cfg.kappa), min=0.0)
        opt.zero_grad()
        for p, ga, gd in zip(params, g_att, g_dist, strict=True):
            p.grad = -(ga - delta * gd)  # ascend J_att − δ·J_dist
        opt.step()
