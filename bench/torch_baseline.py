"""PyTorch speed baseline for the GPU benchmarks.

    python3 bench/torch_baseline.py --out bench_torch.jsonl [--quick] [--only a,b,c]

(a) attn_core_fwd / attn_core_fwdbwd: causal SDPA, bf16, 16 query heads over
    8 KV heads, head dim 64, about 64K tokens per call (B = 65536 // S).
(b) layer_fwd_gqe / layer_fwd_gqa: one attention layer's prefill forward
    (dim 1024, projections included), bf16 weights, torch.compile.
(c) train: training step of the 236M model (16 layers, dim 1024, N=16, G=8,
    k=1, MLP 4096 gelu, vocab 50304, tied) at S=2048 (B=8), 8192 (B=2) and
    16384 (B=1), bf16 autocast, the global gradient norm clipped at 1.0 and
    fused AdamW (the step bench/train_cuda.lua times), RoPE tables computed
    once per model: tokens/s and peak memory, for every PyTorch formulation
    of the layer we know to be fast, each eager and compiled (--modes), each
    in a fresh compile:
      gqe/fast     this file's FastGQEAttention (gather the chosen queries,
                   rotate only those, SDPA with native GQA; top-1 routing by
                   max rather than topk)
      gqe/authors  the formulation of the paper authors' module: RoPE on all N
                   query heads, softmax router + topk, gather of the chosen
                   heads, K/V expanded to G*k heads, one SDPA call, the
                   renormalised weighted slot, the shared head over mean K/V,
                   o_proj over the concatenation
      gqe/merged   gqe/fast with the shared head inside the routed slots'
                   SDPA call (its query after the slots, the group means of
                   K and V after the groups'), the layout gqe itself runs
      gqa/dense    dense GQA (SDPA with enable_gqa), RoPE on queries and keys
    The report compares ours against the fastest row of each kind.

Every result is one JSON line {"bench": ..., "S": ..., "ms": ..., ...} on
stdout and in --out. Times are CUDA-event medians after warm-up.

The layers here are the same maths as tests/reference/gqe_reference.py
(make_goldens.py checks that in float64) with the same parameter names, but
written for speed: only the chosen queries are rotated and attended, and the
attention itself is SDPA over G*k query heads with native GQA.
"""
import argparse
import json
import math
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

EPS_RENORM = 1e-9

# "native": SDPA's enable_gqa; "repeat": K/V repeated to the query heads
# (older PyTorch, or a GPU backend that rejects enable_gqa). Set by probe_gqa().
GQA_MODE = "native"


def sdpa(q, k, v, causal):
    """q (B, Hq, T, dh), k/v (B, Hkv, T, dh); query head h reads KV head
    h // (Hq / Hkv), the GQA convention of GQE.md's slot order."""
    if GQA_MODE == "native" or q.shape[1] == k.shape[1]:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal,
                                              enable_gqa=q.shape[1] != k.shape[1])
    rep = q.shape[1] // k.shape[1]
    return F.scaled_dot_product_attention(q, k.repeat_interleave(rep, 1),
                                          v.repeat_interleave(rep, 1), is_causal=causal)


def probe_gqa():
    """Uses enable_gqa only where a fused GPU kernel takes it: falling back to
    the math kernel would materialise S x S scores and measure nothing useful."""
    global GQA_MODE
    if not torch.cuda.is_available():
        return GQA_MODE
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
        q = torch.randn(1, 4, 128, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        kv = torch.randn(1, 2, 128, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                          SDPBackend.CUDNN_ATTENTION]):
            o = F.scaled_dot_product_attention(q, kv, kv, is_causal=True, enable_gqa=True)
            o.sum().backward()
        GQA_MODE = "native"
    except (RuntimeError, TypeError, ImportError):
        GQA_MODE = "repeat"
    return GQA_MODE


def rope_tables(T, dh, theta, dtype, device):
    """Rotate-half tables (T, dh); angles in float32 (float64 for float64 runs)."""
    work = torch.float64 if dtype == torch.float64 else torch.float32
    inv_freq = theta ** (-2.0 * torch.arange(dh // 2, dtype=work, device=device) / dh)
    ang = torch.arange(T, dtype=work, device=device)[:, None] * inv_freq[None, :]
    ang = torch.cat([ang, ang], dim=-1)
    return ang.cos().to(dtype), ang.sin().to(dtype)


def apply_rope(x, cos, sin):
    """x (B, T, H, dh) or (B, T, dh)."""
    shape = [1, x.shape[1]] + [1] * (x.dim() - 3) + [x.shape[-1]]
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos.view(shape) + torch.cat([-x2, x1], dim=-1) * sin.view(shape)


class FastGQEAttention(nn.Module):
    """GQE (kind 'gqe') or dense GQA (kind 'gqa'); same arguments, parameter
    names and outputs (last_aux) as gqe_reference.GQEAttention."""

    def __init__(self, dim, experts, groups, k=1, head_dim=None, variant="gqe",
                 router="softmax", rope=True, rope_theta=10000.0, causal=True, kind="gqe"):
        super().__init__()
        self.N, self.G, self.M, self.k = experts, groups, experts // groups, k
        self.dh = head_dim if head_dim else dim // experts
        self.variant, self.router_kind, self.kind = variant, router, kind
        self.rope, self.rope_theta, self.causal = rope, float(rope_theta), causal
        dh = self.dh
        self.q_proj = nn.Linear(dim, experts * dh, bias=False)
        self.k_proj = nn.Linear(dim, groups * dh, bias=False)
        self.v_proj = nn.Linear(dim, groups * dh, bias=False)
        if kind == "gqa":
            slots = experts
        else:
            self.router = nn.Linear(dim, experts, bias=False)
            if variant == "gqe":
                self.q_shared = nn.Linear(dim, dh, bias=False)
            slots = groups * k + (2 if variant == "gqe" else 0)
        self.o_proj = nn.Linear(slots * dh, dim, bias=False)
        self.last_aux = None
        self.fast_top1 = True

    def forward(self, x):
        """y, keeping the aux loss in last_aux like the reference."""
        y, self.last_aux = self.forward_aux(x, need_aux=True)
        return y

    def tables(self, rope, T, dtype, device):
        """RoPE's (cos, sin) in dtype: the model's precomputed tables when
        given (a model computes them once, as Llama-style code does), else
        computed here (a layer used alone)."""
        if rope is None:
            return rope_tables(T, self.dh, self.rope_theta, dtype, device)
        return rope[0][:T].to(dtype), rope[1][:T].to(dtype)

    def forward_aux(self, x, need_aux, rope=None):
        """(y, aux). Returning aux rather than storing it keeps the compiled
        graph free of module mutation; prefill passes need_aux=False."""
        B, T, _ = x.shape
        G, M, k, dh = self.G, self.M, self.k, self.dh
        K = self.k_proj(x).view(B, T, G, dh)
        V = self.v_proj(x).view(B, T, G, dh)
        if self.rope:
            cos, sin = self.tables(rope, T, K.dtype, x.device)
            K = apply_rope(K, cos, sin)

        if self.kind == "gqa":
            q = self.q_proj(x).view(B, T, self.N, dh)
            if self.rope:
                q = apply_rope(q, cos, sin)
            o = sdpa(q.transpose(1, 2), K.transpose(1, 2), V.transpose(1, 2), self.causal)
            y = self.o_proj(o.transpose(1, 2).reshape(B, T, self.N * dh))
            return y, (x.new_zeros((), dtype=torch.float32) if need_aux else None)

        P, I, p_aux = self.route(x)

        # Gather the chosen queries before RoPE: the rotation depends only on
        # position and lane, so rotating G*k heads equals rotating all N and
        # then gathering, at a fraction of the work.
        Q = self.q_proj(x).view(B, T, G, M, dh)
        q = Q.gather(3, I.unsqueeze(-1).expand(B, T, G, k, dh)).reshape(B, T, G * k, dh)
        if self.rope:
            q = apply_rope(q, cos, sin)
        o = sdpa(q.transpose(1, 2), K.transpose(1, 2), V.transpose(1, 2), self.causal)
        o = o.transpose(1, 2).reshape(B, T, G, k, dh)
        return self.combine(x, o, P, I, p_aux, K, V, cos if self.rope else None,
                            sin if self.rope else None, need_aux)

    def route(self, x):
        """Top-k weights P and indices I (B, T, G, k) of each group's experts,
        and the probabilities the aux loss reads."""
        B, T, _ = x.shape
        # Router in float32 at least: bf16 probabilities would blur the top-k.
        r = self.router(x).view(B, T, self.G, self.M)
        r = r.float() if r.dtype != torch.float64 else r
        if self.router_kind == "softmax":
            p = torch.softmax(r, dim=-1)
            p_aux = p
        else:
            p = torch.sigmoid(r)
            p_aux = p / p.sum(dim=-1, keepdim=True)
        if self.k == 1 and self.fast_top1:
            # torch.topk lowers to a sort-based kernel; max is one reduction
            # (the first maximum on ties, as topk's lower index).
            P, I = p.max(dim=-1, keepdim=True)
        else:
            P, I = torch.topk(p, self.k, dim=-1)
        return P, I, p_aux

    def combine(self, x, o, P, I, p_aux, K, V, cos, sin, need_aux, shared=None):
        """From the slot heads' outputs o (B, T, G, k, dh) to (y, aux): the
        variant's slots, the shared head over mean K/V (or its output
        `shared` (B, T, dh) where the caller attended it), o_proj, the aux
        loss."""
        B, T, G, k, dh = o.shape
        M = self.M

        if self.variant == "weighted_concat":
            parts = [(o * P.unsqueeze(-1).to(o.dtype)).reshape(B, T, G * k * dh)]
        else:
            parts = [o.reshape(B, T, G * k * dh)]
        if self.variant == "gqe":
            w = P / P.sum(dim=(-2, -1), keepdim=True).clamp_min(EPS_RENORM)
            parts.append((o * w.unsqueeze(-1).to(o.dtype)).sum(dim=(2, 3)))
            if shared is None:
                qs = self.q_shared(x)
                if self.rope:
                    qs = apply_rope(qs, cos, sin)
                shared = sdpa(qs.unsqueeze(1), K.mean(dim=2).unsqueeze(1), V.mean(dim=2).unsqueeze(1),
                              self.causal).squeeze(1)
            parts.append(shared)
        y = self.o_proj(torch.cat(parts, dim=-1))

        if not need_aux:
            return y, None
        f = F.one_hot(I, M).to(p_aux.dtype).sum(dim=(0, 1, 3)) / (B * T)
        return y, (M * (f * p_aux.mean(dim=(0, 1))).sum(dim=-1)).mean()


class AuthorsGQEAttention(FastGQEAttention):
    """GQE in the formulation of the paper authors' published module: every
    query head is projected and rotated, the router's top-k heads of each
    group are gathered (torch.topk), K/V are expanded to the G*k chosen heads
    and one SDPA call attends them all. Same parameters, maths and outputs as
    FastGQEAttention (kind 'gqe' only)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.fast_top1 = False

    def forward_aux(self, x, need_aux, rope=None):
        B, T, _ = x.shape
        G, M, k, dh, N = self.G, self.M, self.k, self.dh, self.N
        q = self.q_proj(x).view(B, T, N, dh)
        K = self.k_proj(x).view(B, T, G, dh)
        V = self.v_proj(x).view(B, T, G, dh)
        if self.rope:
            cos, sin = self.tables(rope, T, K.dtype, x.device)
            q, K = apply_rope(q, cos, sin), apply_rope(K, cos, sin)
        P, I, p_aux = self.route(x)
        qsel = q.view(B, T, G, M, dh).gather(3, I.unsqueeze(-1).expand(B, T, G, k, dh))
        Ke = K.unsqueeze(3).expand(B, T, G, k, dh).reshape(B, T, G * k, dh)
        Ve = V.unsqueeze(3).expand(B, T, G, k, dh).reshape(B, T, G * k, dh)
        o = F.scaled_dot_product_attention(qsel.reshape(B, T, G * k, dh).transpose(1, 2),
                                           Ke.transpose(1, 2), Ve.transpose(1, 2),
                                           is_causal=self.causal)
        o = o.transpose(1, 2).reshape(B, T, G, k, dh)
        return self.combine(x, o, P, I, p_aux, K, V, cos if self.rope else None,
                            sin if self.rope else None, need_aux)


class MergedGQEAttention(FastGQEAttention):
    """FastGQEAttention with the shared head (variant gqe) in the routed
    slots' SDPA call: the shared query after the G*k slots (k times: SDPA
    takes a fixed number of query heads per KV head; the copies' outputs are
    not used, so they get no gradient), the group means of K and V after the
    G heads. One call instead of two; same maths."""

    def forward_aux(self, x, need_aux, rope=None):
        if self.kind != "gqe" or self.variant != "gqe":
            return super().forward_aux(x, need_aux, rope)
        B, T, _ = x.shape
        G, M, k, dh = self.G, self.M, self.k, self.dh
        K = self.k_proj(x).view(B, T, G, dh)
        V = self.v_proj(x).view(B, T, G, dh)
        cos = sin = None
        if self.rope:
            cos, sin = self.tables(rope, T, K.dtype, x.device)
            K = apply_rope(K, cos, sin)
        P, I, p_aux = self.route(x)
        Q = self.q_proj(x).view(B, T, G, M, dh)
        q = Q.gather(3, I.unsqueeze(-1).expand(B, T, G, k, dh)).reshape(B, T, G * k, dh)
        qs = self.q_shared(x).view(B, T, 1, dh).expand(B, T, k, dh)
        q = torch.cat([q, qs], dim=2)
        if self.rope:
            q = apply_rope(q, cos, sin)
        Km = torch.cat([K, K.mean(dim=2, keepdim=True)], dim=2)
        Vm = torch.cat([V, V.mean(dim=2, keepdim=True)], dim=2)
        o = sdpa(q.transpose(1, 2), Km.transpose(1, 2), Vm.transpose(1, 2), self.causal).transpose(1, 2)
        return self.combine(x, o[:, :, :G * k].reshape(B, T, G, k, dh), P, I, p_aux, K, V, cos, sin,
                            need_aux, shared=o[:, :, G * k])


class FastMLP(nn.Module):
    def __init__(self, dim, hidden, kind):
        super().__init__()
        self.kind, self.hidden = kind, hidden
        if kind == "gelu":
            self.fc_in = nn.Linear(dim, hidden, bias=False)
        else:
            self.gate_up = nn.Linear(dim, 2 * hidden, bias=False)
        self.fc_out = nn.Linear(hidden, dim, bias=False)

    def forward(self, x):
        if self.kind == "gelu":
            return self.fc_out(F.gelu(self.fc_in(x)))
        gate, up = self.gate_up(x).split(self.hidden, dim=-1)
        return self.fc_out(F.silu(gate) * up)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


class FastBlock(nn.Module):
    def __init__(self, dim, attn, mlp, hidden, eps):
        super().__init__()
        self.attn_norm = RMSNorm(dim, eps)
        attn = dict(attn)
        layer = {"fast": FastGQEAttention, "authors": AuthorsGQEAttention,
                 "merged": MergedGQEAttention}[attn.pop("formulation", "fast")]
        self.attn = layer(dim, **attn)
        self.mlp_norm = RMSNorm(dim, eps)
        self.mlp = FastMLP(dim, hidden, mlp)

    def forward(self, h, rope):
        a, aux = self.attn.forward_aux(self.attn_norm(h), need_aux=True, rope=rope)
        h = h + a
        return h + self.mlp(self.mlp_norm(h)), aux


class FastLM(nn.Module):
    """Same arguments and parameter names as gqe_reference.LM; forward
    returns the training loss ce + aux_coef * sum of aux."""

    def __init__(self, vocab, dim, layers, attn, mlp="gelu", mlp_hidden=None, tied=True,
                 norm_eps=1e-5, max_seq=16384):
        super().__init__()
        self.vocab, self.tied = vocab, tied
        self.tok_emb = nn.Embedding(vocab, dim)
        hidden = mlp_hidden if mlp_hidden else 4 * dim
        self.blocks = nn.ModuleList(FastBlock(dim, attn, mlp, hidden, norm_eps)
                                    for _ in range(layers))
        self.norm = RMSNorm(dim, norm_eps)
        if not tied:
            self.lm_head = nn.Linear(dim, vocab, bias=False)
        # RoPE tables once per model (float64, which float64 runs need;
        # layers cast them to their activations' dtype), not in every layer
        # of every step: inductor would fuse pow, sin and cos per element
        # into each RoPE kernel (about 6 ms of a 2K step on an H100).
        dh = attn.get("head_dim") or dim // attn.get("experts", 1)
        cos, sin = rope_tables(max_seq, dh, float(attn.get("rope_theta", 10000.0)), torch.float64, None)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def forward(self, tokens, targets, aux_coef):
        h = self.tok_emb(tokens.long())
        aux = 0.0
        rope = (self.rope_cos, self.rope_sin)
        for blk in self.blocks:
            h, a = blk(h, rope)
            aux = aux + a
        h = self.norm(h)
        logits = F.linear(h, self.tok_emb.weight if self.tied else self.lm_head.weight)
        # Under autocast cross_entropy runs in float32 on its own.
        ce = F.cross_entropy(logits.reshape(-1, self.vocab), targets.reshape(-1).long(),
                             ignore_index=-1)
        return ce + aux_coef * aux


# ---------------------------------------------------------------- timing

class Recorder:
    def __init__(self, path, common):
        self.path, self.common = path, common
        self.file = open(path, "w") if path else None

    def emit(self, **row):
        line = json.dumps(dict(row, **self.common))
        print(line, flush=True)
        if self.file:
            self.file.write(line + "\n")
            self.file.flush()


def time_cuda(fn, warmup, iters):
    """Median milliseconds of fn() over iters calls, each between two CUDA
    events, after warmup calls (which also trigger any compilation)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times), min(times)


def causal_attn_flops(B, H, S, dh):
    """Matmul FLOPs of causal attention forward: two S x S x dh products per
    head, half of them masked away."""
    return 4.0 * B * H * S * S * dh / 2


# ---------------------------------------------------------------- (a) attention core

def bench_attention_core(rec, sizes, warmup, iters):
    H, HKV, dh, tokens = 16, 8, 64, 65536
    for S in sizes:
        B = max(1, tokens // S)
        gen = torch.Generator(device="cuda").manual_seed(0)
        q = torch.randn(B, H, S, dh, device="cuda", dtype=torch.bfloat16, generator=gen)
        k = torch.randn(B, HKV, S, dh, device="cuda", dtype=torch.bfloat16, generator=gen)
        v = torch.randn(B, HKV, S, dh, device="cuda", dtype=torch.bfloat16, generator=gen)
        flops = causal_attn_flops(B, H, S, dh)
        with torch.no_grad():
            ms, best = time_cuda(lambda: sdpa(q, k, v, True), warmup, iters)
        rec.emit(bench="attn_core_fwd", S=S, B=B, heads=H, kv_heads=HKV, head_dim=dh, ms=ms,
                 ms_min=best, tflops=flops / ms / 1e9)

        qg, kg, vg = (t.detach().requires_grad_(True) for t in (q, k, v))
        do = torch.randn_like(q)

        def fwd_bwd():
            o = sdpa(qg, kg, vg, True)
            torch.autograd.grad(o, (qg, kg, vg), do)
        ms, best = time_cuda(fwd_bwd, warmup, iters)
        # backward does 2.5x the forward's matmul work (five products against two).
        rec.emit(bench="attn_core_fwdbwd", S=S, B=B, heads=H, kv_heads=HKV, head_dim=dh, ms=ms,
                 ms_min=best, tflops=3.5 * flops / ms / 1e9)
        del q, k, v, qg, kg, vg, do
        torch.cuda.empty_cache()


# ---------------------------------------------------------------- (b) one layer, prefill

LAYER_CFG = dict(dim=1024, experts=16, groups=8, k=1, head_dim=64, variant="gqe",
                 router="softmax", rope=True, causal=True)


def allow_recompiles(n=64):
    """One compiled graph per (model, S): more than dynamo's default of 8
    recompiles per function, after which it would silently run eager."""
    import torch._dynamo  # only the benchmarks compile; the layers import without it
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, n)


def bench_layer(rec, sizes, warmup, iters):
    results = {}
    for kind in ("gqe", "gqa"):
        torch._dynamo.reset()
        torch.manual_seed(0)
        layer = FastGQEAttention(**dict(LAYER_CFG, kind=kind)).cuda().to(torch.bfloat16).eval()
        if kind == "gqe":
            # Non-zero router so top-k is not a constant tie.
            nn.init.normal_(layer.router.weight, std=0.02)
        # Static shapes per S (dynamic=False): a size-generic graph would be
        # slower than what a user compiling for one prefill length gets.
        compiled = torch.compile(lambda x: layer.forward_aux(x, need_aux=False)[0], dynamic=False)
        for S in sizes:
            B = max(1, 65536 // S)
            x = torch.randn(B, S, LAYER_CFG["dim"], device="cuda", dtype=torch.bfloat16)
            with torch.no_grad():
                ms, best = time_cuda(lambda: compiled(x), warmup, iters)
            results[(kind, S)] = ms
            rec.emit(bench=f"layer_fwd_{kind}", S=S, B=B, ms=ms, ms_min=best,
                     tokens_per_s=B * S / ms * 1e3, **{k: v for k, v in LAYER_CFG.items()
                                                      if k in ("dim", "experts", "groups", "k")})
            del x
        del layer, compiled
        torch.cuda.empty_cache()
    for S in sizes:
        rec.emit(bench="layer_fwd_speedup", S=S, ms=results[("gqe", S)],
                 gqa_ms=results[("gqa", S)], speedup=results[("gqa", S)] / results[("gqe", S)])


# ---------------------------------------------------------------- (c) training

MODEL_CFG = dict(vocab=50304, dim=1024, layers=16, mlp="gelu", mlp_hidden=4096, tied=True,
                 attn=dict(experts=16, groups=8, k=1, head_dim=64, variant="gqe",
                           router="softmax", rope=True, causal=True))
TRAIN_SEQ, TRAIN_BATCH, AUX_COEF = 2048, 8, 0.01


def init_for_bench(model, layers):
    """The project's init (reference init_weights), except a small non-zero
    router so that routing varies from the first step."""
    std, out_std = 0.02, 0.02 / math.sqrt(2 * layers)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            elif name.endswith(("o_proj.weight", "fc_out.weight")):
                p.normal_(0.0, out_std)
            else:
                p.normal_(0.0, std)


TRAIN_SHAPES = ((2048, 8), (8192, 2), (16384, 1))
# (name, attention kind, layer formulation)
TRAIN_MODELS = (("gqe/fast", "gqe", "fast"), ("gqe/authors", "gqe", "authors"),
                ("gqe/merged", "gqe", "merged"), ("gqa/dense", "gqa", "fast"))


def bench_train_one(rec, name, kind, formulation, mode, S, B, warmup, iters):
    """One model, one compile mode, one shape, in a fresh dynamo state (after
    the recompile limit dynamo would silently fall back to eager)."""
    torch._dynamo.reset()
    cfg = dict(MODEL_CFG, attn=dict(MODEL_CFG["attn"], kind=kind, formulation=formulation))
    torch.manual_seed(0)
    model = FastLM(**cfg).cuda()
    init_for_bench(model, cfg["layers"])
    nparams = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=3e-4, betas=(0.9, 0.95), eps=1e-8, fused=True)
    if mode == "eager":
        run = model
    elif mode == "default":
        run = torch.compile(model, dynamic=False)
    else:
        run = torch.compile(model, dynamic=False, mode=mode)
    gen = torch.Generator(device="cuda").manual_seed(0)
    tokens = torch.randint(0, cfg["vocab"], (B, S + 1), device="cuda", generator=gen)
    inputs, targets = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()

    params = list(model.parameters())

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = run(inputs, targets, AUX_COEF)
        loss.backward()
        # bench/train_cuda.lua clips at 1.0 too: the same step on both sides
        torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    t0 = time.time()
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    compile_s = time.time() - t0
    # CUDA graphs (max-autotune, reduce-overhead) keep activations in a
    # private pool whose blocks allocated bytes stop counting once recorded:
    # there only the reserved bytes, with the cache emptied first, hold them.
    graphs = mode in ("max-autotune", "reduce-overhead")
    if graphs:
        torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    ms, best = time_cuda(step, 0, iters)
    alloc = torch.cuda.max_memory_allocated() / 2**30
    reserved = torch.cuda.max_memory_reserved() / 2**30
    peak = reserved if graphs else alloc
    rec.emit(bench="train_torch", model=name, kind=kind, formulation=formulation, mode=mode,
             S=S, B=B, ms=ms, ms_min=best, tokens_per_s=B * S / ms * 1e3, peak_mem_gib=peak,
             peak_alloc_gib=alloc, peak_reserved_gib=reserved, cuda_graphs=graphs,
             params=nparams, warmup_s=compile_s, layers=cfg["layers"], dim=cfg["dim"])
    del model, run, opt, tokens, inputs, targets
    torch.cuda.empty_cache()


def check_formulations():
    """The authors' and the merged formulations compute what
    FastGQEAttention computes: the same output and aux loss on one input
    (float32), at k = 1 and 2, or the run stops."""
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    for k in (1, 2):
        torch.manual_seed(0)
        a = FastGQEAttention(256, experts=16, groups=8, k=k, head_dim=32).cuda()
        nn.init.normal_(a.router.weight, std=0.5)
        x = torch.randn(2, 64, 256, device="cuda")
        with torch.no_grad():
            ya, auxa = a.forward_aux(x, True)
        for other in (AuthorsGQEAttention, MergedGQEAttention):
            b = other(256, experts=16, groups=8, k=k, head_dim=32).cuda()
            b.load_state_dict(a.state_dict())
            with torch.no_grad():
                yb, auxb = b.forward_aux(x, True)
            err = max((ya - yb).abs().max().item(), (auxa - auxb).abs().item())
            if err > 1e-4:
                sys.exit(f"{other.__name__} differs from FastGQEAttention by {err:g} (k = {k})")
    torch.backends.cuda.matmul.allow_tf32 = tf32


def bench_train(rec, warmup, iters, shapes, models, modes):
    check_formulations()
    for S, B in shapes:
        for name, kind, formulation in TRAIN_MODELS:
            if name not in models:
                continue
            for mode in modes:
                try:
                    bench_train_one(rec, name, kind, formulation, mode, S, B, warmup, iters)
                except Exception as e:  # a failed compile is reported, not fatal
                    rec.emit(bench="train_torch", model=name, kind=kind, mode=mode, S=S, B=B,
                             error=f"{type(e).__name__}: {e}"[:300])
                    torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser(description="PyTorch speed baseline (JSON lines).")
    ap.add_argument("--out", help="file for the JSON lines (also printed)")
    ap.add_argument("--quick", action="store_true", help="fewer sizes and iterations")
    ap.add_argument("--only", default="a,b,c", help="comma list of a (attention core), "
                    "b (layer prefill), c (training)")
    ap.add_argument("--train-seq", default="2048,8192,16384",
                    help="training sequence lengths (batch: 16K tokens per step)")
    ap.add_argument("--models", default=",".join(m[0] for m in TRAIN_MODELS),
                    help="training models: " + ", ".join(m[0] for m in TRAIN_MODELS))
    ap.add_argument("--modes", default="eager,default",
                    help="eager, default (torch.compile), max-autotune, ...")
    args = ap.parse_args()
    parts = set(args.only.split(","))
    if not parts <= {"a", "b", "c"}:
        sys.exit(f"--only takes a comma list of a, b, c; got {args.only!r}")
    if not torch.cuda.is_available():
        sys.exit("torch_baseline.py needs a CUDA GPU")

    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    allow_recompiles()
    mode = probe_gqa()
    sizes = [2048, 8192, 32768] if args.quick else [2048, 4096, 8192, 16384, 32768]
    warmup, iters = (3, 10) if args.quick else (10, 50)
    common = {"impl": "torch", "torch": torch.__version__, "gpu": torch.cuda.get_device_name(),
              "gqa_mode": mode}
    rec = Recorder(args.out, common)
    if "a" in parts:
        bench_attention_core(rec, sizes, warmup, iters)
    if "b" in parts:
        bench_layer(rec, sizes, warmup, iters)
    if "c" in parts:
        seqs = [int(v) for v in args.train_seq.split(",")]
        shapes = [(S, B) for S, B in TRAIN_SHAPES if S in seqs]
        if len(shapes) != len(seqs):
            sys.exit(f"--train-seq takes some of {[S for S, _ in TRAIN_SHAPES]}; got {args.train_seq!r}")
        models = set(args.models.split(","))
        if not models <= {m[0] for m in TRAIN_MODELS}:
            sys.exit(f"--models takes some of {[m[0] for m in TRAIN_MODELS]}; got {args.models!r}")
        bench_train(rec, 3 if args.quick else 5, 10 if args.quick else 20, shapes, models,
                    args.modes.split(","))


if __name__ == "__main__":
    main()
