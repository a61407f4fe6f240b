#!/usr/bin/env bash
# Writes a C file holding the given text files as NUL-terminated byte arrays.
set -eu
echo '#include "embedded.h"'
echo '#include <string.h>'
i=0
for f in "$@"; do
    echo "static const char file_$i[] = {"
    od -An -v -tx1 "$f" | sed -e 's/ \([0-9a-f][0-9a-f]\)/0x\1,/g'
    echo "0x00};"
    i=$((i+1))
done
echo 'const gqe_embedded_file gqe_embedded_files[] = {'
i=0
for f in "$@"; do echo "  {\"$f\", file_$i, sizeof file_$i - 1},"; i=$((i+1)); done
echo '  {NULL, NULL, 0}};'
cat <<'C'
const char *gqe_embedded_find(const char *path, size_t *len) {
    for (const gqe_embedded_file *f = gqe_embedded_files; f->path; f++)
        if (strcmp(f->path, path) == 0) { if (len) *len = f->len; return f->data; }
    return NULL;
}
C
