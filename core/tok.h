/* GPT-2's byte-level BPE tokenizer (the r50k / "gpt2" encoding), loaded
 * from OpenAI's original files: encoder.json (token string -> id, 50,257
 * entries) and vocab.bpe (the 50,000 merges in rank order).
 *
 * Encoding: the text is cut into pieces by GPT-2's pattern (contractions,
 * letters, numbers, other symbols, whitespace runs, each optionally after
 * one space), matched by PCRE2 with Unicode properties; each piece's bytes
 * are merged pairwise, lowest merge rank first, until no merge applies.
 * Bytes that are not valid UTF-8 count as characters of no class (neither
 * letter, number nor space), as Python's "surrogateescape" decoding makes
 * them, so any byte string encodes and decode(encode(x)) == x always.
 * `<|endoftext|>` in the text is ordinary text; its id 50256 is for the
 * caller to insert between documents.
 *
 * A tokenizer keeps a cache of piece -> ids: use one per thread. */
#ifndef GQE_TOK_H
#define GQE_TOK_H

#include <stddef.h>
#include <stdint.h>
#include "error.h"

#define GQE_TOK_GPT2_VOCAB 50257
#define GQE_TOK_GPT2_EOT 50256

typedef struct gqe_tokenizer gqe_tokenizer;

/* A growable list of token ids that encode appends to. */
typedef struct gqe_tok_ids { int32_t *ids; int64_t n, cap; } gqe_tok_ids;
void gqe_tok_ids_free(gqe_tok_ids *v);
gqe_status gqe_tok_ids_push(gqe_tok_ids *v, int32_t id);

gqe_status gqe_tok_load(gqe_tokenizer **out, const char *encoder_json, const char *vocab_bpe);
void gqe_tok_free(gqe_tokenizer *t);
int64_t gqe_tok_vocab(const gqe_tokenizer *t);
int32_t gqe_tok_eot(const gqe_tokenizer *t);

/* Appends the ids of text[0..len) to out. */
gqe_status gqe_tok_encode(gqe_tokenizer *t, const char *text, size_t len, gqe_tok_ids *out);
/* The bytes of one token (not NUL-terminated); NULL for an id outside the vocabulary. */
const char *gqe_tok_token(const gqe_tokenizer *t, int32_t id, size_t *len);
/* Decodes n ids into a new malloc'ed buffer (NUL-terminated; *len excludes the NUL). */
gqe_status gqe_tok_decode(const gqe_tokenizer *t, const int32_t *ids, int64_t n, char **out, size_t *len);

#endif
