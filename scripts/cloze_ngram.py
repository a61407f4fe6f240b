#!/usr/bin/env python3
"""A byte n-gram baseline for the Brown cloze task: interpolated
Witten-Bell byte n-gram counted on the training part of data/brown.txt
(everything before its last 10% of bytes, as data.kind=text splits), each
choice scored as gqe scores it: the log-probability of " " + choice after
the context; acc takes the highest sum, acc_norm the highest sum per byte.
Also prints "pmi": the choice whose likelihood the context raises most
(sum after the context minus sum with no context), which gqe does not
score, and the bits per byte on the first 100 kB of the held-out part.

    python3 scripts/cloze_ngram.py [--order 5] [--n 2000] [--text data/brown.txt] [--task data/brown_cloze.jsonl]
"""
import argparse
import collections
import json
import math

ap = argparse.ArgumentParser()
ap.add_argument("--order", type=int, default=5)
ap.add_argument("--n", type=int, default=2000, help="first N examples")
ap.add_argument("--text", default="data/brown.txt")
ap.add_argument("--task", default="data/brown_cloze.jsonl")
args = ap.parse_args()
N = args.order

text = open(args.text, "rb").read()
split = len(text) - len(text) // 10
train = text[:split]
counts = [collections.defaultdict(collections.Counter) for _ in range(N)]
for k in range(N):
    c = counts[k]
    for i in range(k, len(train)):
        c[train[i - k:i]][train[i]] += 1
totals = [{h: (sum(v.values()), len(v)) for h, v in c.items()} for c in counts]


def prob(hist, b):
    p = 1 / 256
    for k in range(min(N, len(hist) + 1)):
        h = hist[len(hist) - k:] if k else b""
        t = totals[k].get(h)
        if not t:
            break
        n, u = t
        lam = n / (n + u)
        p = lam * counts[k][h][b] / n + (1 - lam) * p
    return p


def logprob(ctx, cont):
    full = ctx + cont
    return sum(math.log(prob(full[max(0, i - N + 1):i], full[i])) for i in range(len(ctx), len(full)))


val = text[split:][:100000]
bpb = sum(-math.log2(prob(val[max(0, i - N + 1):i], val[i])) for i in range(len(val))) / len(val)
exs = [json.loads(l) for l in open(args.task, encoding="utf-8") if l.strip()][:args.n]
acc = acc_norm = pmi = 0
for ex in exs:
    ctx = ex["context"].encode()
    chs = [(" " + c).encode() for c in ex["choices"]]
    s = [logprob(ctx, c) for c in chs]
    best = lambda v: max(range(len(v)), key=lambda i: (v[i], -i))
    acc += best(s) == ex["label"]
    acc_norm += best([x / len(c) for x, c in zip(s, chs)]) == ex["label"]
    pmi += best([x - logprob(b"", c) for x, c in zip(s, chs)]) == ex["label"]
n = len(exs)
print("order %d, %.3f bits/byte held out; n %d: acc %.4f acc_norm %.4f pmi %.4f (standard error of chance %.4f)"
      % (N, bpb, n, acc / n, acc_norm / n, pmi / n, math.sqrt(0.25 * 0.75 / n)))
