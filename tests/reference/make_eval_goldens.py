#!/usr/bin/env python3
"""Golden scores for gqe's multiple-choice evaluation: a tiny byte-level
LM (vocab 256, 2 layers, dense gqa and gqe attention) scores every choice
of tests/golden/eval/tiny.jsonl and of tests/golden/eval/tiny_llmc.bin
(llm.c's eval format) by the log-likelihood of its tokens after the
context, each row on its own, in float64, with the rows cut to their last
SEQ + 1 tokens as gqe does (and lm-evaluation-harness): only context is
cut, a choice is never longer than SEQ.

JSONL choices are scored as " " + choice (UTF-8 bytes = tokens); acc takes
the highest sum, acc_norm the highest sum / bytes of " " + choice. llm.c
files already hold the tokens (here bytes), acc_norm divides by the token
count (one byte per token).

Writes tests/golden/eval/eval_<kind>.safetensors: every parameter (the
names gqe loads), logprob_jsonl / logprob_llmc (one per choice, in file
order), acc_jsonl, acc_norm_jsonl, acc_llmc, acc_norm_llmc.
`--inputs-only` writes tiny_llmc.bin alone (no torch needed).

    python3 tests/reference/make_eval_goldens.py [--out tests/golden/eval]
"""
import argparse
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SEQ = 32
VOCAB = 256
MODELS = {
    "gqa": dict(experts=4, groups=2, kind="gqa"),
    "gqe": dict(experts=4, groups=2, k=1, kind="gqe", variant="gqe"),
}


def write_llmc(path):
    """12 examples of 2..5 choices, byte tokens, deterministic."""
    s = 12345
    def rnd(n):
        nonlocal s
        s = (s * 1103515245 + 12345) % 2**31
        return (s >> 8) % n
    stream, longest = [], 0
    for i in range(12):
        nc = 2 + rnd(4)
        ex = [65535, 0, i, rnd(nc), nc]
        ctx = [97 + rnd(26) for _ in range(1 + rnd(40))]
        ex += [len(ctx)] + ctx
        for _ in range(nc):
            ch = [32] + [97 + rnd(26) for _ in range(rnd(8))]
            ex += [len(ch)] + ch
        ex[1] = 2 * len(ex)
        longest = max(longest, ex[1])
        stream += ex
    header = [20240522, 1, 12, longest] + [0] * 252
    with open(path, "wb") as f:
        f.write(struct.pack("<256i", *header))
        f.write(struct.pack("<%dH" % len(stream), *stream))


def read_llmc(path):
    data = open(path, "rb").read()
    n = struct.unpack_from("<i", data, 8)[0]
    u = struct.unpack_from("<%dH" % ((len(data) - 1024) // 2), data, 1024)
    pos, out = 0, []
    for _ in range(n):
        label, nc = u[pos + 3], u[pos + 4]
        p = pos + 5
        ctx = list(u[p + 1:p + 1 + u[p]]); p += 1 + u[p]
        chs = []
        for _ in range(nc):
            chs.append(list(u[p + 1:p + 1 + u[p]])); p += 1 + u[p]
        out.append((ctx, chs, label, [len(c) for c in chs]))
        pos += u[pos + 1] // 2
    return out


def read_jsonl(path):
    out = []
    for line in open(path, encoding="utf-8"):
        if line.strip():
            ex = json.loads(line)
            chs = [list((" " + c).encode("utf-8")) for c in ex["choices"]]
            out.append((list(ex["context"].encode("utf-8")), chs, ex["label"], [len(c) for c in chs]))
    return out


def score(model, examples, torch):
    lps, correct, correct_norm = [], 0, 0
    for ctx, chs, label, nbytes in examples:
        sums = []
        for ch in chs:
            row = (ctx + ch)[-(SEQ + 1):]
            n_ch = len(ch)   # only context is cut: gqe refuses a choice longer than SEQ
            assert n_ch <= SEQ, "a choice of %d tokens does not fit SEQ = %d" % (n_ch, SEQ)
            x = torch.tensor([row[:-1]], dtype=torch.int64)
            logp = torch.log_softmax(model(x)[0], dim=-1)
            tgt = row[1:]
            sums.append(sum(float(logp[j, tgt[j]]) for j in range(len(tgt) - n_ch, len(tgt))))
        lps += sums
        correct += max(range(len(sums)), key=lambda c: (sums[c], -c)) == label
        norm = [sums[c] / nbytes[c] for c in range(len(sums))]
        correct_norm += max(range(len(norm)), key=lambda c: (norm[c], -c)) == label
    return lps, correct / len(examples), correct_norm / len(examples)


def save_safetensors(tensors, path, metadata=None):
    """The safetensors format written out (8-byte little-endian header size,
    a JSON header of dtype/shape/offsets, the raw little-endian data), for
    machines without the safetensors package. float32 tensors only."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name in sorted(tensors):
        t = tensors[name]
        assert str(t.dtype) == "torch.float32", name
        data = t.contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for b in blobs:
            f.write(b)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(HERE, "..", "golden", "eval"))
    ap.add_argument("--inputs-only", action="store_true")
    args = ap.parse_args()
    llmc = os.path.join(args.out, "tiny_llmc.bin")
    write_llmc(llmc)
    if args.inputs_only:
        return
    import torch
    try:
        from safetensors.torch import save_file
    except ImportError:   # e.g. Debian's python3-torch, which has no safetensors package
        save_file = save_safetensors
    sys.path.insert(0, HERE)
    from gqe_reference import LM
    torch.manual_seed(20240522)
    for kind, attn in MODELS.items():
        attn = dict(dict(k=1, head_dim=8, variant="gqe", router="softmax", rope=True, rope_theta=10000.0,
                         causal=True), **attn)
        model = LM(vocab=VOCAB, dim=32, layers=2, attn=attn, mlp="gelu", mlp_hidden=48, tied=True)
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(torch.randn(p.shape) * 0.3)   # router included: no near-ties at the top-1 cut
        model = model.double().eval()
        out = {name: p.detach().float().contiguous() for name, p in model.named_parameters()}
        with torch.no_grad():
            for which, examples in (("jsonl", read_jsonl(os.path.join(args.out, "tiny.jsonl"))), ("llmc", read_llmc(llmc))):
                lps, acc, acc_norm = score(model, examples, torch)
                out["logprob_" + which] = torch.tensor(lps, dtype=torch.float64).float()
                out["acc_" + which] = torch.tensor([acc], dtype=torch.float32)
                out["acc_norm_" + which] = torch.tensor([acc_norm], dtype=torch.float32)
        save_file(out, os.path.join(args.out, "eval_%s.safetensors" % kind),
                  metadata={"generator": "make_eval_goldens.py, torch %s" % torch.__version__, "seq": str(SEQ)})
        print("wrote eval_%s.safetensors" % kind)


if __name__ == "__main__":
    main()
