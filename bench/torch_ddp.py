"""PyTorch DDP baseline for make bench-multi: the 236M model of
torch_baseline.py (bf16 autocast, torch.compile, fused AdamW, batch 8 x 2048
per GPU) under DistributedDataParallel, started by torchrun. Rank 0 prints
one JSON line: global tokens/s and the largest peak memory of any GPU.

    torchrun --nproc_per_node N bench/torch_ddp.py [--steps 10] [--kind gqe]
"""
import argparse
import json
import os
import time

import torch
import torch.distributed as dist

import torch_baseline as tb


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--kind", default="gqe")
    args = ap.parse_args()
    dist.init_process_group("nccl")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    cfg = dict(tb.MODEL_CFG, attn=dict(tb.MODEL_CFG["attn"], kind=args.kind))
    torch.manual_seed(0)
    model = tb.FastLM(**cfg).cuda()
    tb.init_for_bench(model, cfg["layers"])
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=3e-4, betas=(0.9, 0.95), eps=1e-8, fused=True)
    compiled = torch.compile(ddp, dynamic=False)
    gen = torch.Generator(device="cuda").manual_seed(rank)
    B, T = tb.TRAIN_BATCH, tb.TRAIN_SEQ
    tokens = torch.randint(0, cfg["vocab"], (B, T + 1), device="cuda", generator=gen)
    inputs, targets = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = compiled(inputs, targets, tb.AUX_COEF)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    dist.barrier()
    t0 = time.time()
    for _ in range(args.steps):
        step()
    torch.cuda.synchronize()
    dist.barrier()
    dt = (time.time() - t0) / args.steps
    peak = torch.tensor([torch.cuda.max_memory_allocated() / 2**30], device="cuda")
    dist.all_reduce(peak, op=dist.ReduceOp.MAX)
    if rank == 0:
        print(json.dumps({"bench": "train_multi", "impl": "torch_ddp", "kind": args.kind, "world": world,
                          "tokens_per_s": round(world * B * T / dt), "step_ms": round(dt * 1e3, 1),
                          "peak_gib_per_gpu": round(peak.item(), 2)}), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
