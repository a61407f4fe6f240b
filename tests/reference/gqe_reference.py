"""Plain PyTorch reference of the GQE attention layer and the language model.

Written from GQE.md (the project's statement of the layer) for clarity, not speed: attention is an explicit
scores matrix with a masked softmax (no SDPA), top-k is a stable sort so ties
go to the lower index, and every step follows the numbered forward of GQE.md.
Gradients come from autograd. Parameter names match the C core and the
authors' module, so weights move between them through safetensors unchanged.

Runs in any float dtype; the golden files are made in float64.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

VARIANTS = ("gqe", "hard_concat", "weighted_concat")
ROUTERS = ("softmax", "sigmoid")
KINDS = ("gqe", "gqa")
MLPS = ("gelu", "swiglu")
EPS_RENORM = 1e-9  # floor of the slot-B normaliser sum(P)


# ---------------------------------------------------------------- helpers

def rope_tables(T, dh, theta, dtype, device):
    """cos and sin tables (T, dh) of the rotate-half convention.

    Angle of position t and pair i (i < dh/2) is t * theta^(-2i/dh); the table
    repeats the dh/2 angles twice so pair (i, i + dh/2) shares one angle.
    Built in float64 so a float64 golden is exact to its precision.
    """
    i = torch.arange(dh // 2, dtype=torch.float64, device=device)
    inv_freq = theta ** (-2.0 * i / dh)
    pos = torch.arange(T, dtype=torch.float64, device=device)
    ang = pos[:, None] * inv_freq[None, :]
    ang = torch.cat([ang, ang], dim=-1)
    return ang.cos().to(dtype), ang.sin().to(dtype)


def apply_rope(x, cos, sin):
    """x (B, T, ..., dh): x * cos + rotate_half(x) * sin, per position t."""
    T, dh = x.shape[1], x.shape[-1]
    shape = [1, T] + [1] * (x.dim() - 3) + [dh]
    half = dh // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos.view(shape) + rotated * sin.view(shape)


def attend(q, k, v, causal):
    """Explicit attention. q (B, H, T, dh); k, v (B, H, T, dh) -> (B, H, T, dh).

    Head h of q attends to head h of k and v (callers expand KV heads).
    """
    T, dh = q.shape[-2], q.shape[-1]
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(dh)
    if causal:
        future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(future, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def stable_topk(p, k):
    """Top-k along the last dim, descending, ties to the lower index.

    torch.topk leaves tie order unspecified; a stable ascending sort of -p
    keeps equal values in index order, which is what GQE.md asks for.
    """
    idx = torch.sort(-p, dim=-1, stable=True).indices[..., :k]
    return p.gather(-1, idx), idx


def load_balancing_loss(p_aux, idx, M):
    """Switch-style aux loss averaged over groups (GQE.md).

    p_aux (B, S, G, M): router probabilities (sigmoid scores normalised over
    the group for the sigmoid router). idx (B, S, G, k) chosen experts.
    f[g, m] is a count (no gradient); the gradient flows through pbar only.
    """
    T = p_aux.shape[0] * p_aux.shape[1]
    counts = F.one_hot(idx.long(), M).to(p_aux.dtype).sum(dim=(0, 1, 3))  # (G, M)
    f = counts / T
    pbar = p_aux.mean(dim=(0, 1))  # (G, M)
    return (M * (f * pbar).sum(dim=-1)).mean()


# ---------------------------------------------------------------- attention

class GQEAttention(nn.Module):
    """GQE attention (kind 'gqe') or the dense GQA baseline (kind 'gqa').

    After forward: last_probs (B, S, G, M) router probabilities (softmax p, or
    sigmoid scores s for the sigmoid router), last_indices (B, S, G, k) int32,
    last_aux (scalar; zero for gqa). Dense gqa leaves probs/indices None.
    """

    def __init__(self, dim, experts, groups, k=1, head_dim=None, variant="gqe",
                 router="softmax", rope=True, rope_theta=10000.0, causal=True, kind="gqe"):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if router not in ROUTERS:
            raise ValueError(f"router must be one of {ROUTERS}, got {router!r}")
        if experts % groups != 0:
            raise ValueError(f"experts ({experts}) must be a multiple of groups ({groups})")
        self.dim, self.N, self.G = dim, experts, groups
        self.M = experts // groups
        self.k = k
        self.dh = head_dim if head_dim else dim // experts
        self.variant, self.router_kind, self.kind = variant, router, kind
        self.rope, self.rope_theta, self.causal = rope, float(rope_theta), causal
        if kind == "gqe" and not 1 <= k <= self.M:
            raise ValueError(f"k ({k}) must be in [1, {self.M}]")
        if rope and self.dh % 2:
            raise ValueError(f"head_dim ({self.dh}) must be even with rope")

        dh = self.dh
        self.q_proj = nn.Linear(dim, experts * dh, bias=False)
        self.k_proj = nn.Linear(dim, groups * dh, bias=False)
        self.v_proj = nn.Linear(dim, groups * dh, bias=False)
        if kind == "gqe":
            self.router = nn.Linear(dim, groups * self.M, bias=False)
            if variant == "gqe":
                self.q_shared = nn.Linear(dim, dh, bias=False)
        self.o_proj = nn.Linear(self.slots() * dh, dim, bias=False)
        self.last_probs = None
        self.last_indices = None
        self.last_aux = None

    def slots(self):
        """Output slots S of width dh feeding o_proj."""
        if self.kind == "gqa":
            return self.N
        return self.G * self.k + (2 if self.variant == "gqe" else 0)

    def forward(self, x):
        if self.kind == "gqa":
            return self._forward_gqa(x)
        return self._forward_gqe(x)

    def _rope(self, T, x):
        return rope_tables(T, self.dh, self.rope_theta, x.dtype, x.device)

    def _forward_gqa(self, x):
        B, T, _ = x.shape
        N, G, dh = self.N, self.G, self.dh
        q = self.q_proj(x).view(B, T, N, dh)
        k = self.k_proj(x).view(B, T, G, dh)
        v = self.v_proj(x).view(B, T, G, dh)
        if self.rope:
            cos, sin = self._rope(T, x)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        # Query head h belongs to group h // (N/G): repeat each KV head N/G times.
        rep = N // G
        k = k.repeat_interleave(rep, dim=2)
        v = v.repeat_interleave(rep, dim=2)
        o = attend(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), self.causal)
        self.last_probs, self.last_indices = None, None
        self.last_aux = x.new_zeros(())
        return self.o_proj(o.transpose(1, 2).reshape(B, T, N * dh))

    def _forward_gqe(self, x):
        B, T, _ = x.shape
        G, M, k, dh = self.G, self.M, self.k, self.dh

        # 1. projections; expert e = g*M + m.
        Q = self.q_proj(x).view(B, T, G, M, dh)
        K = self.k_proj(x).view(B, T, G, dh)
        V = self.v_proj(x).view(B, T, G, dh)
        # 2. RoPE on Q and K.
        if self.rope:
            cos, sin = self._rope(T, x)
            Q, K = apply_rope(Q, cos, sin), apply_rope(K, cos, sin)

        # 3. router, per group.
        r = self.router(x).view(B, T, G, M)
        if self.router_kind == "softmax":
            p = torch.softmax(r, dim=-1)
            p_aux = p
        else:
            p = torch.sigmoid(r)
            p_aux = p / p.sum(dim=-1, keepdim=True)

        # 4. top-k; indices carry no gradient, P is a gather of p.
        P, I = stable_topk(p, k)  # (B, T, G, k)

        # 5. slot queries attend to their group's K, V: G*k heads, head g*k+j uses group g.
        q_sel = Q.gather(3, I.unsqueeze(-1).expand(B, T, G, k, dh))  # (B, T, G, k, dh)
        q_heads = q_sel.reshape(B, T, G * k, dh).transpose(1, 2)
        k_heads = K.repeat_interleave(k, dim=2).transpose(1, 2)
        v_heads = V.repeat_interleave(k, dim=2).transpose(1, 2)
        o = attend(q_heads, k_heads, v_heads, self.causal)
        o = o.transpose(1, 2).reshape(B, T, G, k, dh)

        # 6. output slots, in order A..., B, C.
        if self.variant == "weighted_concat":
            slot_a = o * P.unsqueeze(-1)
        else:
            slot_a = o
        parts = [slot_a.reshape(B, T, G * k * dh)]
        if self.variant == "gqe":
            # B: weights normalised over all chosen experts of all groups.
            w = P / P.sum(dim=(-2, -1), keepdim=True).clamp(min=EPS_RENORM)
            parts.append((w.unsqueeze(-1) * o).sum(dim=(2, 3)))
            # C: shared head over the group means of K (after RoPE) and V.
            qs = self.q_shared(x)  # (B, T, dh)
            if self.rope:
                qs = apply_rope(qs, cos, sin)
            k_bar = K.mean(dim=2)
            v_bar = V.mean(dim=2)
            c = attend(qs.unsqueeze(1), k_bar.unsqueeze(1), v_bar.unsqueeze(1), self.causal)
            parts.append(c.squeeze(1))
        y = self.o_proj(torch.cat(parts, dim=-1))

        self.last_probs = p.detach()
        self.last_indices = I.to(torch.int32)
        self.last_aux = load_balancing_loss(p_aux, I, M)
        return y


# ---------------------------------------------------------------- language model

class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps) * self.weight


class MLP(nn.Module):
    """gelu: fc_out(gelu(fc_in x)), exact erf GELU.
    swiglu: gate_up rows [0, H) are the gate, [H, 2H) the up projection;
    fc_out(silu(gate) * up)."""

    def __init__(self, dim, hidden, kind):
        super().__init__()
        if kind not in MLPS:
            raise ValueError(f"mlp must be one of {MLPS}, got {kind!r}")
        self.kind, self.hidden = kind, hidden
        if kind == "gelu":
            self.fc_in = nn.Linear(dim, hidden, bias=False)
        else:
            self.gate_up = nn.Linear(dim, 2 * hidden, bias=False)
        self.fc_out = nn.Linear(hidden, dim, bias=False)

    def forward(self, x):
        if self.kind == "gelu":
            return self.fc_out(F.gelu(self.fc_in(x), approximate="none"))
        gu = self.gate_up(x)
        gate, up = gu[..., :self.hidden], gu[..., self.hidden:]
        return self.fc_out(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, dim, attn_cfg, mlp, mlp_hidden, norm_eps):
        super().__init__()
        self.attn_norm = RMSNorm(dim, norm_eps)
        self.attn = GQEAttention(dim, **attn_cfg)
        self.mlp_norm = RMSNorm(dim, norm_eps)
        self.mlp = MLP(dim, mlp_hidden, mlp)

    def forward(self, h):
        h = h + self.attn(self.attn_norm(h))
        return h + self.mlp(self.mlp_norm(h))


class LM(nn.Module):
    """Embedding, pre-norm blocks, final RMSNorm, tied or untied head.

    attn: dict of GQEAttention arguments other than dim (experts, groups, k,
    head_dim, variant, router, rope, rope_theta, causal, kind).
    """

    def __init__(self, vocab, dim, layers, attn, mlp="gelu", mlp_hidden=None,
                 tied=True, norm_eps=1e-5):
        super().__init__()
        self.vocab, self.dim, self.layers, self.tied = vocab, dim, layers, tied
        self.tok_emb = nn.Embedding(vocab, dim)
        hidden = mlp_hidden if mlp_hidden else 4 * dim
        self.blocks = nn.ModuleList(Block(dim, attn, mlp, hidden, norm_eps) for _ in range(layers))
        self.norm = RMSNorm(dim, norm_eps)
        if not tied:
            self.lm_head = nn.Linear(dim, vocab, bias=False)

    def forward(self, tokens):
        """tokens (B, S) integer -> logits (B, S, V)."""
        h = self.tok_emb(tokens.long())
        for blk in self.blocks:
            h = blk(h)
        h = self.norm(h)
        head = self.tok_emb.weight if self.tied else self.lm_head.weight
        return h @ head.t()

    def aux_sum(self):
        """Sum of the layers' aux losses of the last forward."""
        return torch.stack([blk.attn.last_aux for blk in self.blocks]).sum()

    def loss(self, tokens, targets, aux_coef):
        """(loss, ce, aux_sum): ce is the mean over targets != -1."""
        logits = self(tokens)
        ce = F.cross_entropy(logits.reshape(-1, self.vocab), targets.reshape(-1).long(),
                             ignore_index=-1)
        aux = self.aux_sum()
        return ce + aux_coef * aux, ce, aux

    def init_weights(self, seed, std=0.02):
        init_weights(self, seed, self.layers, std)


def init_weights(module, seed, layers=1, std=0.02):
    """The project's initialisation: N(0, std) for embeddings and linear
    weights, output projections (o_proj, fc_out) N(0, std / sqrt(2 layers))
    so the residual stream does not grow with depth, router zero (uniform
    routing at start), norm gains one."""
    gen = torch.Generator().manual_seed(seed)
    out_std = std / math.sqrt(2 * layers)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            elif name.endswith("router.weight"):
                p.zero_()
            else:
                s = out_std if name.endswith(("o_proj.weight", "fc_out.weight")) else std
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * s)
