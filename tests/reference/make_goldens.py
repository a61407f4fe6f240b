"""Writes the golden files the C tests compare against.

    python3 tests/reference/make_goldens.py --out tests/golden [--device cpu|cuda]

Every case draws its inputs and weights in float32 (so the stored values are
exactly what the C side loads), computes in float64, and stores float32
results. Weights are N(0, 0.3), the router included, so routing is not
uniform; a case whose top-k has a near-tie (which float32 rounding could flip)
is redrawn with another seed. Before writing, each attention and LM case is
cross-checked against the fast layers of bench/torch_baseline.py (SDPA-based,
written independently of the reference) in float64.

File layout (safetensors, names as in GQE.md / LM): see tests/reference/README.md.
"""
import argparse
import os
import sys

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "bench"))
from gqe_reference import GQEAttention, LM  # noqa: E402

WEIGHT_STD = 0.3
MIN_TOPK_GAP = 1e-4   # smallest allowed gap between ranked router scores
MAX_TRIES = 20
CROSSCHECK_TOL = 1e-9

# name, constructor arguments (dim 32, head_dim 8 unless said), batch, seq.
D = 32
ATTN_CASES = [
    ("gqe_N8_G4_k1_rope", dict(experts=8, groups=4, k=1, head_dim=8)),
    ("gqe_N8_G4_k1_norope", dict(experts=8, groups=4, k=1, head_dim=8, rope=False)),
    ("gqe_N16_G4_k2_rope", dict(experts=16, groups=4, k=2, head_dim=8)),
    ("gqe_N16_G4_k1_rope", dict(experts=16, groups=4, k=1, head_dim=8)),
    ("gqe_N8_G4_k2_rope", dict(experts=8, groups=4, k=2, head_dim=8)),      # k = M
    ("gqe_N4_G1_k1_rope", dict(experts=4, groups=1, k=1)),                  # dh = d/N = 8
    ("hard_concat_N8_G4_k1_rope", dict(experts=8, groups=4, k=1, head_dim=8, variant="hard_concat")),
    ("hard_concat_N16_G4_k2_rope", dict(experts=16, groups=4, k=2, head_dim=8, variant="hard_concat")),
    ("weighted_concat_N8_G4_k1_rope", dict(experts=8, groups=4, k=1, head_dim=8, variant="weighted_concat")),
    ("weighted_concat_N16_G4_k2_rope", dict(experts=16, groups=4, k=2, head_dim=8, variant="weighted_concat")),
    ("gqe_sigmoid_N16_G4_k2_rope", dict(experts=16, groups=4, k=2, head_dim=8, router="sigmoid")),
    ("gqe_N8_G4_k1_rope_noncausal", dict(experts=8, groups=4, k=1, head_dim=8, causal=False)),
    ("gqa_N8_G4_rope", dict(experts=8, groups=4, head_dim=8, kind="gqa")),
]
ATTN_B, ATTN_S, ATTN_AUX_COEF = 2, 7, 0.1

# head_dim defaults to dim / experts = 4; mlp_hidden != dim so a transposed
# weight shows up as a shape error; sizes keep each file under 100 KB.
LM_CASES = [
    ("lm_gqe_gelu_tied", dict(vocab=61, dim=32, layers=2, mlp="gelu", mlp_hidden=24, tied=True,
                              attn=dict(experts=8, groups=4, k=1, variant="gqe", kind="gqe"))),
    ("lm_gqa_swiglu_untied", dict(vocab=57, dim=32, layers=2, mlp="swiglu", mlp_hidden=16, tied=False,
                                  attn=dict(experts=8, groups=2, kind="gqa"))),
]
LM_B, LM_S, LM_AUX_COEF = 2, 9, 0.01

ATTN_DEFAULTS = dict(k=1, head_dim=None, variant="gqe", router="softmax", rope=True,
                     rope_theta=10000.0, causal=True, kind="gqe")


def meta_str(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def fill_random(module):
    """N(0, WEIGHT_STD) in float32 for every parameter, norms included (a
    gain of one would hide a missing multiply)."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape) * WEIGHT_STD)


def topk_gap(probs, k):
    """Smallest gap between consecutive ranked scores up to rank k: the
    order of the chosen experts and the cut after rank k must be robust."""
    ranked = probs.sort(dim=-1, descending=True).values
    gaps = ranked[..., :-1] - ranked[..., 1:]
    if gaps.shape[-1] == 0:
        return float("inf")
    return gaps[..., :k].min().item()


def to_save(t):
    if t.dtype in (torch.int32, torch.int64):
        return t.detach().to(torch.int32).cpu().contiguous()
    return t.detach().to(torch.float32).cpu().contiguous()


def write(path, tensors, meta):
    tensors = {k: to_save(v) for k, v in tensors.items()}
    save_file(tensors, path, metadata={k: meta_str(v) for k, v in meta.items()})
    size = os.path.getsize(path)
    print(f"{os.path.basename(path)}: {len(tensors)} tensors, {size / 1024:.1f} KB, "
          + ", ".join(f"{k}={meta_str(v)}" for k, v in meta.items()
                      if k in ("loss", "aux", "ce", "seed", "min_gap")))
    if size > 100 * 1024:
        print(f"  warning: {path} is over 100 KB")


# ---------------------------------------------------------------- attention

def run_attn_case(name, args, seed, device):
    cfg = dict(ATTN_DEFAULTS, dim=D, **args)
    for attempt in range(MAX_TRIES):
        case_seed = seed + 1000 * attempt
        torch.manual_seed(case_seed)
        layer = GQEAttention(**cfg)
        fill_random(layer)
        x = torch.randn(ATTN_B, ATTN_S, D)
        dy = torch.randn(ATTN_B, ATTN_S, D)
        layer = layer.to(device=device, dtype=torch.float64)
        x64 = x.to(device, torch.float64).requires_grad_(True)
        y = layer(x64)
        gap = float("inf") if cfg["kind"] == "gqa" else topk_gap(layer.last_probs, layer.k)
        if gap > MIN_TOPK_GAP:
            break
        print(f"  {name}: seed {case_seed} has a top-k gap {gap:.2e}, redrawing")
    else:
        raise RuntimeError(f"{name}: no seed without near-ties in {MAX_TRIES} tries")

    aux = layer.last_aux
    loss = (y * dy.to(y)).sum() + ATTN_AUX_COEF * aux
    loss.backward()

    out = {"x": x, "dy": dy, "y": y, "dx": x64.grad, "aux": aux.reshape(1)}
    for pname, p in layer.named_parameters():
        out[pname] = p
        out["grad." + pname] = p.grad
    if cfg["kind"] == "gqe":
        out["probs"] = layer.last_probs
        out["indices"] = layer.last_indices
    crosscheck_attn(name, cfg, layer, x64, dy)

    meta = dict(cfg, head_dim=layer.dh, aux_coef=ATTN_AUX_COEF, batch=ATTN_B, seq=ATTN_S,
                seed=case_seed, aux=f"{aux.item():.6f}", min_gap=f"{gap:.2e}")
    return out, meta


def crosscheck_attn(name, cfg, ref, x, dy):
    """Same weights through the fast layer: y, aux, dx and every parameter
    gradient must agree to float64 precision."""
    import torch_baseline as tb
    fast = tb.FastGQEAttention(**cfg).to(device=x.device, dtype=torch.float64)
    fast.load_state_dict(ref.state_dict(), strict=True)
    xf = x.detach().clone().requires_grad_(True)
    y = fast(xf)
    aux = fast.last_aux
    ((y * dy.to(y)).sum() + ATTN_AUX_COEF * aux).backward()
    with torch.no_grad():
        y_ref = ref(x.detach())
    diffs = {"y": (y - y_ref).abs().max().item(),
             "aux": abs(aux.item() - ref.last_aux.item()),
             "dx": (xf.grad - x.grad).abs().max().item()}
    ref_params = dict(ref.named_parameters())
    for pname, p in fast.named_parameters():
        diffs["grad." + pname] = (p.grad - ref_params[pname].grad).abs().max().item()
    bad = {k: v for k, v in diffs.items() if not v <= CROSSCHECK_TOL}
    if bad:
        raise RuntimeError(f"{name}: reference and fast layer disagree: {bad}")


# ---------------------------------------------------------------- language model

def run_lm_case(name, cfg, seed, device):
    attn = dict(ATTN_DEFAULTS, **cfg["attn"])
    model_args = dict(cfg, attn=attn)
    for attempt in range(MAX_TRIES):
        case_seed = seed + 1000 * attempt
        torch.manual_seed(case_seed)
        model = LM(**model_args)
        fill_random(model)
        tokens = torch.randint(0, cfg["vocab"], (LM_B, LM_S), dtype=torch.int32)
        targets = torch.randint(0, cfg["vocab"], (LM_B, LM_S), dtype=torch.int32)
        targets[0, 2] = -1          # ignored positions, in both rows
        targets[1, -3:] = -1
        model = model.to(device=device, dtype=torch.float64)
        loss, ce, aux = model.loss(tokens.to(device), targets.to(device), LM_AUX_COEF)
        gap = float("inf")
        if attn["kind"] == "gqe":
            gap = min(topk_gap(b.attn.last_probs, b.attn.k) for b in model.blocks)
        if gap > MIN_TOPK_GAP:
            break
        print(f"  {name}: seed {case_seed} has a top-k gap {gap:.2e}, redrawing")
    else:
        raise RuntimeError(f"{name}: no seed without near-ties in {MAX_TRIES} tries")

    loss.backward()
    out = {"tokens": tokens, "targets": targets, "loss": loss.reshape(1), "ce": ce.reshape(1),
           "aux": aux.reshape(1)}
    for pname, p in model.named_parameters():
        out[pname] = p
        out["grad." + pname] = p.grad
    crosscheck_lm(name, model_args, model, tokens.to(device), targets.to(device), loss)

    meta = {"vocab": cfg["vocab"], "dim": cfg["dim"], "layers": cfg["layers"], "mlp": cfg["mlp"],
            "mlp_hidden": cfg["mlp_hidden"], "tied": cfg["tied"], "norm_eps": 1e-5,
            "aux_coef": LM_AUX_COEF, "batch": LM_B, "seq": LM_S, "seed": case_seed,
            "head_dim": model.blocks[0].attn.dh, "loss": f"{loss.item():.6f}",
            "ce": f"{ce.item():.6f}", "aux": f"{aux.item():.6f}", "min_gap": f"{gap:.2e}"}
    meta.update({k: v for k, v in attn.items() if k != "head_dim"})
    return out, meta


def crosscheck_lm(name, model_args, ref, tokens, targets, ref_loss):
    import torch_baseline as tb
    fast = tb.FastLM(**model_args).to(device=tokens.device, dtype=torch.float64)
    fast.load_state_dict(ref.state_dict(), strict=True)
    loss = fast(tokens, targets, LM_AUX_COEF)
    loss.backward()
    diffs = {"loss": abs(loss.item() - ref_loss.item())}
    ref_params = dict(ref.named_parameters())
    for pname, p in fast.named_parameters():
        diffs["grad." + pname] = (p.grad - ref_params[pname].grad).abs().max().item()
    bad = {k: v for k, v in diffs.items() if not v <= CROSSCHECK_TOL}
    if bad:
        raise RuntimeError(f"{name}: reference and fast LM disagree: {bad}")


# ---------------------------------------------------------------- AdamW

def adamw_case(seed, device):
    """Three AdamW steps with weight decay on the matrix only (two param
    groups, as a training script decays weights but not norm gains)."""
    hp = dict(lr=1e-2, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1)
    torch.manual_seed(seed)
    p0 = torch.randn(5, 7)
    n0 = 1.0 + 0.1 * torch.randn(7)
    grads_p = [torch.randn(5, 7) for _ in range(3)]
    grads_n = [torch.randn(7) for _ in range(3)]
    p = p0.to(device, torch.float64).requires_grad_(True)
    n = n0.to(device, torch.float64).requires_grad_(True)
    opt = torch.optim.AdamW([{"params": [p], "weight_decay": hp["weight_decay"]},
                             {"params": [n], "weight_decay": 0.0}],
                            lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"])
    out = {"p": p0, "n": n0}
    for i in range(3):
        p.grad = grads_p[i].to(p)
        n.grad = grads_n[i].to(n)
        opt.step()
        out[f"p_grad{i + 1}"] = grads_p[i]
        out[f"n_grad{i + 1}"] = grads_n[i]
        out[f"p_step{i + 1}"] = p.detach().clone()
        out[f"n_step{i + 1}"] = n.detach().clone()
    meta = dict(hp, steps=3, decay="p only", seed=seed)
    return out, meta


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="directory for the .safetensors files")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (computation is float64 either way)")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    for i, (name, case) in enumerate(ATTN_CASES):
        tensors, meta = run_attn_case(name, case, args.seed + i, args.device)
        write(os.path.join(args.out, f"attn_{name}.safetensors"), tensors, meta)
    for i, (name, case) in enumerate(LM_CASES):
        tensors, meta = run_lm_case(name, case, args.seed + 100 + i, args.device)
        write(os.path.join(args.out, f"{name}.safetensors"), tensors, meta)
    tensors, meta = adamw_case(args.seed + 200, args.device)
    write(os.path.join(args.out, "adamw_step.safetensors"), tensors, meta)


if __name__ == "__main__":
    main()
