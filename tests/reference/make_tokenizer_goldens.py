#!/usr/bin/env python3
"""Golden ids for gqe's GPT-2 tokenizer, from reference implementations,
offline, loaded from the same two files gqe reads (data/gpt2/encoder.json,
data/gpt2/vocab.bpe; `make data` fetches them).

References:
  - tiktoken: an Encoding built from the files (GPT-2's pattern, ranks =
    encoder ids, <|endoftext|> = 50256); the golden ids for valid UTF-8.
  - GPT-2's own encoder.py algorithm (regex module + bpe()), written out
    below; it must agree with tiktoken on every valid case (checked), and it
    defines invalid UTF-8: the bytes are decoded with "surrogateescape", so
    each bad byte is a character of no class, and pieces are encoded back
    to their original bytes. tiktoken cannot take such text.
  - Hugging Face tokenizers (ByteLevel BPE from the same files), when
    installed: checked on every valid case too.

Writes tests/golden/tokenizer/cases.json (the stress file whole and line by
line, and a few hundred Brown lines and chunks, as hex with their ids) and
tests/golden/tokenizer/brown.json (token count and FNV-1a 64 of the ids of
the whole data/brown.txt as little-endian uint32).

    python3 tests/reference/make_tokenizer_goldens.py [--data data] [--out tests/golden/tokenizer]
"""
import argparse
import json
import os
import sys

import regex

PAT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
EOT = 50256


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class GPT2:
    """OpenAI's encoder.py, over bytes."""

    def __init__(self, encoder_json, vocab_bpe):
        with open(encoder_json, encoding="utf-8") as f:
            self.encoder = json.load(f)
        with open(vocab_bpe, encoding="utf-8") as f:
            merges = [tuple(l.split()) for l in f.read().split("\n")[1:] if l.strip()]
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.b2u = bytes_to_unicode()
        self.u2b = {v: k for k, v in self.b2u.items()}
        self.pat = regex.compile(PAT)
        self.cache = {}

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = list(token)
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            first, second = best
            new, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    new.append(first + second)
                    i += 2
                else:
                    new.append(word[i])
                    i += 1
            word = new
        self.cache[token] = word
        return word

    def encode(self, data: bytes):
        text = data.decode("utf-8", "surrogateescape")
        ids = []
        for piece in self.pat.findall(text):
            b = piece.encode("utf-8", "surrogateescape")
            ids.extend(self.encoder[t] for t in self.bpe("".join(self.b2u[x] for x in b)))
        return ids

    def token_bytes(self, token):
        return bytes(self.u2b[c] for c in token)


def tiktoken_encoding(ref):
    import tiktoken
    ranks = {ref.token_bytes(t): i for t, i in ref.encoder.items() if i != EOT}
    return tiktoken.Encoding(name="gpt2-from-files", pat_str=PAT, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": EOT}, explicit_n_vocab=50257)


def hf_tokenizer(encoder_json, vocab_bpe):
    try:
        from tokenizers import Tokenizer, models, pre_tokenizers
    except ImportError:
        return None
    tok = Tokenizer(models.BPE.from_file(encoder_json, vocab_bpe))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    return tok


def fnv1a64(ids):
    h = 0xCBF29CE484222325
    for i in ids:
        for b in int(i).to_bytes(4, "little"):
            h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data")
    ap.add_argument("--out", default="tests/golden/tokenizer")
    args = ap.parse_args()
    enc_json, bpe = os.path.join(args.data, "gpt2/encoder.json"), os.path.join(args.data, "gpt2/vocab.bpe")
    ref = GPT2(enc_json, bpe)
    tt = tiktoken_encoding(ref)
    hf = hf_tokenizer(enc_json, bpe)
    import tiktoken
    generator = "tiktoken %s + GPT-2 encoder.py (regex %s)%s" % (
        tiktoken.__version__, regex.__version__, "" if hf is None else " + tokenizers %s" % __import__("tokenizers").__version__)

    with open(os.path.join(args.out, "stress.txt"), "rb") as f:
        stress = f.read()
    with open(os.path.join(args.data, "brown.txt"), "rb") as f:
        brown = f.read()
    texts = [("stress", stress)]
    texts += [("stress line %d" % (i + 1), l) for i, l in enumerate(stress.split(b"\n")) if l]
    blines = brown.split(b"\n")
    texts += [("brown line %d" % (i + 1), blines[i]) for i in range(7, len(blines), 200) if blines[i]]
    for k in range(4):   # multi-line chunks, from a line start
        at = brown.index(b"\n", len(brown) * (2 * k + 1) // 9) + 1
        texts.append(("brown chunk at %d" % at, brown[at:at + 3000]))

    cases, disagree, hf_disagree = [], 0, 0
    for name, b in texts:
        ids = ref.encode(b)
        try:
            s = b.decode("utf-8")
        except UnicodeDecodeError:
            s = None
        if s is not None:
            ids_tt = tt.encode_ordinary(s)
            if ids_tt != ids:
                disagree += 1
                print("DISAGREE tiktoken vs encoder.py on %s" % name, file=sys.stderr)
            # tokenizers' regex engine (Oniguruma) has its own idea of \s: reported, not fatal.
            if hf is not None and hf.encode(s).ids != ids_tt:
                hf_disagree += 1
                print("note: tokenizers differs from tiktoken on %s" % name, file=sys.stderr)
            ids = ids_tt
        cases.append({"name": name, "hex": b.hex(), "ids": ids, "valid_utf8": s is not None})
    if disagree:
        sys.exit("%d disagreements between the references: golden files not written" % disagree)

    brown_ids = tt.encode_ordinary(brown.decode("utf-8"))
    with open(os.path.join(args.out, "cases.json"), "w") as f:
        json.dump({"generator": generator, "cases": cases}, f, separators=(",", ":"))
        f.write("\n")
    with open(os.path.join(args.out, "brown.json"), "w") as f:
        json.dump({"generator": generator, "file": "data/brown.txt", "bytes": len(brown), "tokens": len(brown_ids),
                   "fnv1a64": fnv1a64(brown_ids), "first": brown_ids[:32], "last": brown_ids[-32:]}, f, indent=1)
        f.write("\n")
    print("wrote %d cases and the Brown checksum (%d tokens) to %s (%s)" % (len(cases), len(brown_ids), args.out, generator))
    if hf is not None:
        print("tokenizers agreed with tiktoken on %d of %d valid cases" % (sum(c["valid_utf8"] for c in cases) - hf_disagree,
                                                                          sum(c["valid_utf8"] for c in cases)))


if __name__ == "__main__":
    main()
