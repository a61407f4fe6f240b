/* safetensors reader. The JSON header is parsed by SQLite's JSON1 functions
 * on an in-memory database: SQLite is already linked for the run log, and a
 * well-tested parser beats a hand-written one on hostile input. Every field
 * is checked before a byte of tensor data is touched. */
#include "safetensors.h"
#include <sqlite3.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef enum { ST_F32, ST_BF16, ST_I32, ST_I64 } st_dtype;
static const char *const st_dtype_names[] = {"F32", "BF16", "I32", "I64"};
static const size_t st_dtype_sizes[] = {4, 2, 4, 8};

typedef struct st_entry {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[GQE_MAX_DIMS];
    uint64_t begin, end;   /* byte range within the data section */
} st_entry;

/* Where the data section's bytes come from: a buffer or an open file. */
typedef struct st_source {
    const unsigned char *mem;  /* start of the data section, or NULL */
    int fd;
    uint64_t file_offset;      /* of the data section, for fd */
} st_source;

void gqe_st_file_free(gqe_st_file *f) {
    if (!f) return;
    for (int i = 0; i < f->count; i++) {
        free(f->names ? f->names[i] : NULL);
        if (f->tensors) gqe_tensor_free(&f->tensors[i]);
    }
    for (int i = 0; i < f->meta_count; i++) {
        free(f->meta_keys ? f->meta_keys[i] : NULL);
        free(f->meta_values ? f->meta_values[i] : NULL);
    }
    free(f->names); free(f->tensors); free(f->meta_keys); free(f->meta_values);
    memset(f, 0, sizeof *f);
}

const gqe_tensor *gqe_st_get(const gqe_st_file *f, const char *name) {
    int lo = 0, hi = f->count - 1;  /* names are sorted */
    while (lo <= hi) {
        int mid = (lo + hi) / 2, c = strcmp(f->names[mid], name);
        if (c == 0) return &f->tensors[mid];
        if (c < 0) lo = mid + 1; else hi = mid - 1;
    }
    return NULL;
}

const char *gqe_st_meta(const gqe_st_file *f, const char *key) {
    for (int i = 0; i < f->meta_count; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

/* ---- header parsing ---------------------------------------------------- */

typedef struct st_parser {
    sqlite3 *db;
    const char *label;
    st_entry *ents;
    int n, cap;
    gqe_st_file *out;   /* receives the metadata */
} st_parser;

static gqe_status db_fail(st_parser *p, const char *what) {
    return gqe_fail(GQE_ERR_DB, "%s: SQLite failed while %s: %s", p->label, what, sqlite3_errmsg(p->db));
}

/* A JSON array of integers (given as JSON text) into out[0..max). */
static gqe_status read_int_array(st_parser *p, const char *json, const char *tensor, const char *field,
                                 int64_t *out, int max, int *n) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(p->db, "SELECT type, value FROM json_each(?1)", -1, &st, NULL) != SQLITE_OK)
        return db_fail(p, "preparing the array query");
    sqlite3_bind_text(st, 1, json, -1, SQLITE_STATIC);
    gqe_status s = GQE_OK;
    int count = 0, rc;
    while (s == GQE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *type = (const char *)sqlite3_column_text(st, 0);
        if (!type || strcmp(type, "integer") != 0 || sqlite3_column_type(st, 1) != SQLITE_INTEGER)
            s = gqe_fail(GQE_ERR_FORMAT, "%s: tensor '%s': %s holds a non-integer (or too large) entry %s",
                         p->label, tensor, field, json);
        else if (count >= max)
            s = gqe_fail(GQE_ERR_FORMAT, "%s: tensor '%s': %s %s has more than %d entries",
                         p->label, tensor, field, json, max);
        else out[count++] = sqlite3_column_int64(st, 1);
    }
    if (s == GQE_OK && rc != SQLITE_DONE) s = db_fail(p, "reading an array");
    sqlite3_finalize(st);
    *n = count;
    return s;
}

static gqe_status parse_metadata(st_parser *p, const char *json) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(p->db, "SELECT key, type, value FROM json_each(?1)", -1, &st, NULL) != SQLITE_OK)
        return db_fail(p, "preparing the metadata query");
    sqlite3_bind_text(st, 1, json, -1, SQLITE_STATIC);
    gqe_st_file *f = p->out;
    gqe_status s = GQE_OK;
    int rc;
    while (s == GQE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(st, 0);
        const char *type = (const char *)sqlite3_column_text(st, 1);
        const char *val = (const char *)sqlite3_column_text(st, 2);
        if (!key || !type || strcmp(type, "text") != 0 || !val) {
            s = gqe_fail(GQE_ERR_FORMAT, "%s: __metadata__ entry '%s' is a JSON %s, expected a string",
                         p->label, key ? key : "?", type ? type : "null");
            break;
        }
        if ((size_t)sqlite3_column_bytes(st, 0) != strlen(key) || (size_t)sqlite3_column_bytes(st, 2) != strlen(val)) {
            s = gqe_fail(GQE_ERR_FORMAT, "%s: __metadata__ entry '%s' contains a NUL character", p->label, key);
            break;
        }
        char **k = realloc(f->meta_keys, sizeof *k * (size_t)(f->meta_count + 1));
        if (k) f->meta_keys = k;
        char **v = realloc(f->meta_values, sizeof *v * (size_t)(f->meta_count + 1));
        if (v) f->meta_values = v;
        if (!k || !v) { s = gqe_fail(GQE_ERR_NOMEM, "out of host memory"); break; }
        f->meta_keys[f->meta_count] = strdup(key);
        f->meta_values[f->meta_count] = strdup(val);
        f->meta_count++;
        if (!f->meta_keys[f->meta_count - 1] || !f->meta_values[f->meta_count - 1])
            s = gqe_fail(GQE_ERR_NOMEM, "out of host memory");
    }
    if (s == GQE_OK && rc != SQLITE_DONE) s = db_fail(p, "reading __metadata__");
    sqlite3_finalize(st);
    return s;
}

/* One tensor entry: row columns are key, type, dtype, shape type, shape,
 * offsets type, offsets. */
static gqe_status parse_entry(st_parser *p, sqlite3_stmt *row, uint64_t data_len) {
    const char *name = (const char *)sqlite3_column_text(row, 0);
    const char *type = (const char *)sqlite3_column_text(row, 1);
    if (!name) return gqe_fail(GQE_ERR_FORMAT, "%s: header entry without a name", p->label);
    if ((size_t)sqlite3_column_bytes(row, 0) != strlen(name))
        return gqe_fail(GQE_ERR_FORMAT, "%s: tensor name '%s' contains a NUL character", p->label, name);
    if (!type || strcmp(type, "object") != 0)
        return gqe_fail(GQE_ERR_FORMAT, "%s: tensor '%s': entry is a JSON %s, expected an object with dtype, shape, data_offsets",
                        p->label, name, type ? type : "null");
    const char *dtype = (const char *)sqlite3_column_text(row, 2);
    const char *shape_type = (const char *)sqlite3_column_text(row, 3);
    const char *shape = (const char *)sqlite3_column_text(row, 4);
    const char *offs_type = (const char *)sqlite3_column_text(row, 5);
    const char *offs = (const char *)sqlite3_column_text(row, 6);
    const char *dtype_type = (const char *)sqlite3_column_text(row, 7);
    if (!dtype || !dtype_type || strcmp(dtype_type, "text") != 0)
        return gqe_fail(GQE_ERR_FORMAT, "%s: tensor '%s': missing or non-string dtype", p->label, name);
    if (!shape || !shape_type || strcmp(shape_type, "array") != 0)
        return gqe_fail(GQE_ERR_FORMAT, "%s: tensor '%s': missing or non-array shape", p->label, name);
    if (!offs || !offs_type || strcmp(offs_type, "array") != 0)
        return gqe_fail(GQE_ERR_FORMAT, "%s: tensor '%s': missing or non-array data_offsets", p->label, name);

    st_entry e = {0};
    int known = -1;
    for (int i = 0; i < 4; i++) if (strcmp(dtype, st_dtype_names[i]) == 0) known = i;
    if (known < 0)
        return gqe_fail(GQE_ERR_FORMAT, "%s: tensor '%s': unsupported dtype '%s' (supported: F32, BF16, I32, I64)",
                        p->label, name, dtype);
    e.dtype = (st_dtype)known;
    int64_t dims[GQE_MAX_DIMS + 1];
    GQE_TRY(read_int_array(p, shape, name, "shape", dims, GQE_MAX_DIMS + 1, &e.ndim));
    if (e.ndim > GQE_MAX_DIMS)
        return gqe_fail(GQE_ERR_FORMAT, "%s: tensor '%s': shape %s has more than %d dims", p->label, name, shape, GQE_MAX_DIMS);
    uint64_t nbytes = st_dtype_sizes[e.dtype];
    for (int i = 0; i < e.ndim; i++) {
        if (dims[i] < 0)
            return gqe_fail(GQE_ERR_FORMAT, "%s: tensor '%s': negative dimension in shape %s", p->label, name, shape);
        e.shape[i] = dims[i];
        if (__builtin_mul_overflow(nbytes, (uint64_t)dims[i], &nbytes))
            return gqe_fail(GQE_ERR_FORMAT, "%s: tensor '%s': shape %s is too large", p->label, name, shape);
    }
    int64_t range[3];
    int nr;
    GQE_TRY(read_int_array(p, offs, name, "data_offsets", range, 3, &nr));
    if (nr != 2)
        return gqe_fail(GQE_ERR_FORMAT, "%s: tensor '%s': data_offsets %s must hold two integers [begin, end]", p->label, name, offs);
    if (range[0] < 0 || range[1] < range[0] || (uint64_t)range[1] > data_len)
        return gqe_fail(GQE_ERR_FORMAT, "%s: tensor '%s': data_offsets %s outside the data section of %llu bytes",
                        p->label, name, offs, (unsigned long long)data_len);
    e.begin = (uint64_t)range[0];
    e.end = (uint64_t)range[1];
    if (e.end - e.begin != nbytes)
        return gqe_fail(GQE_ERR_FORMAT, "%s: tensor '%s': data_offsets %s span %llu bytes but %s %s needs %llu",
                        p->label, name, offs, (unsigned long long)(e.end - e.begin), dtype, shape,
                        (unsigned long long)nbytes);
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 16;
        st_entry *ne = realloc(p->ents, sizeof *ne * (size_t)cap);
        if (!ne) return gqe_fail(GQE_ERR_NOMEM, "out of host memory");
        p->ents = ne; p->cap = cap;
    }
    e.name = strdup(name);
    if (!e.name) return gqe_fail(GQE_ERR_NOMEM, "out of host memory");
    p->ents[p->n++] = e;
    return GQE_OK;
}

static const char *const ENTRY_SQL =
    "SELECT key, type,"
    " CASE WHEN type = 'object' THEN json_extract(value, '$.dtype') END,"
    " CASE WHEN type = 'object' THEN json_type(value, '$.shape') END,"
    " CASE WHEN type = 'object' THEN json_extract(value, '$.shape') END,"
    " CASE WHEN type = 'object' THEN json_type(value, '$.data_offsets') END,"
    " CASE WHEN type = 'object' THEN json_extract(value, '$.data_offsets') END,"
    " CASE WHEN type = 'object' THEN json_type(value, '$.dtype') END,"
    " value"
    " FROM json_each(?1)";

static gqe_status parse_header(st_parser *p, const char *json, size_t len, uint64_t data_len) {
    if (memchr(json, 0, len))
        return gqe_fail(GQE_ERR_FORMAT, "%s: header contains a NUL byte (not valid JSON)", p->label);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(p->db, "SELECT CASE WHEN json_valid(?1) THEN json_type(?1) END", -1, &st, NULL) != SQLITE_OK)
        return db_fail(p, "preparing the validity query");
    sqlite3_bind_text(st, 1, json, (int)len, SQLITE_STATIC);
    gqe_status s = GQE_OK;
    if (sqlite3_step(st) != SQLITE_ROW) s = db_fail(p, "validating the header");
    else if (sqlite3_column_type(st, 0) == SQLITE_NULL)
        s = gqe_fail(GQE_ERR_FORMAT, "%s: header (%zu bytes) is not valid JSON", p->label, len);
    else if (strcmp((const char *)sqlite3_column_text(st, 0), "object") != 0)
        s = gqe_fail(GQE_ERR_FORMAT, "%s: header is a JSON %s, expected an object", p->label,
                     (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    GQE_TRY(s);

    if (sqlite3_prepare_v2(p->db, ENTRY_SQL, -1, &st, NULL) != SQLITE_OK)
        return db_fail(p, "preparing the header query");
    sqlite3_bind_text(st, 1, json, (int)len, SQLITE_STATIC);
    int rc, seen_meta = 0;
    while (s == GQE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(st, 0);
        if (key && strcmp(key, "__metadata__") == 0) {
            const char *type = (const char *)sqlite3_column_text(st, 1);
            if (seen_meta++)
                s = gqe_fail(GQE_ERR_FORMAT, "%s: __metadata__ appears twice", p->label);
            else if (!type || strcmp(type, "object") != 0)
                s = gqe_fail(GQE_ERR_FORMAT, "%s: __metadata__ is a JSON %s, expected an object of strings",
                             p->label, type ? type : "null");
            else
                s = parse_metadata(p, (const char *)sqlite3_column_text(st, 8));
        } else {
            s = parse_entry(p, st, data_len);
        }
    }
    if (s == GQE_OK && rc != SQLITE_DONE) s = db_fail(p, "reading the header");
    sqlite3_finalize(st);
    return s;
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const st_entry *)a)->name, ((const st_entry *)b)->name);
}
static int by_range(const void *a, const void *b) {
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Duplicate names and overlapping byte ranges are corrupt files (two tensors
 * would alias), so both are refused. Leaves the entries sorted by name. */
static gqe_status check_entries(st_parser *p) {
    if (p->n < 2) return GQE_OK;   /* nothing to compare; ents may be NULL (qsort must not see it) */
    qsort(p->ents, (size_t)p->n, sizeof *p->ents, by_range);
    for (int i = 1; i < p->n; i++)
        if (p->ents[i].begin < p->ents[i - 1].end)
            return gqe_fail(GQE_ERR_FORMAT, "%s: tensors '%s' and '%s' have overlapping data_offsets",
                            p->label, p->ents[i - 1].name, p->ents[i].name);
    qsort(p->ents, (size_t)p->n, sizeof *p->ents, by_name);
    for (int i = 1; i < p->n; i++)
        if (strcmp(p->ents[i].name, p->ents[i - 1].name) == 0)
            return gqe_fail(GQE_ERR_FORMAT, "%s: tensor '%s' appears twice in the header", p->label, p->ents[i].name);
    return GQE_OK;
}

/* ---- tensor data ------------------------------------------------------- */

static gqe_status source_read(const st_source *src, const char *label, uint64_t off, void *dst, size_t n) {
    if (src->mem) { memcpy(dst, src->mem + off, n); return GQE_OK; }
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(src->fd, (char *)dst + done, n - done, (off_t)(src->file_offset + off + done));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return gqe_fail(GQE_ERR_IO, "%s: read failed at byte %llu: %s", label,
                                   (unsigned long long)(src->file_offset + off + done), strerror(errno));
        if (r == 0) return gqe_fail(GQE_ERR_FORMAT, "%s: file ended early (truncated while reading?)", label);
        done += (size_t)r;
    }
    return GQE_OK;
}

static gqe_status load_tensor(const st_source *src, const char *label, const char *name,
                              const st_entry *e, gqe_tensor *t) {
    gqe_dtype dt = e->dtype == ST_F32 ? GQE_F32 : e->dtype == ST_BF16 ? GQE_BF16 : GQE_I32;
    /* Scalars are allocated as one element: gqe_tensor_new sizes by numel. */
    int64_t one = 1;
    GQE_TRY(gqe_tensor_new(t, dt, GQE_CPU, e->ndim ? e->ndim : 1, e->ndim ? e->shape : &one));
    t->ndim = e->ndim;
    size_t nbytes = (size_t)(e->end - e->begin);
    if (e->dtype != ST_I64) return source_read(src, label, e->begin, gqe_tensor_data(t), nbytes);
    int64_t *tmp = malloc(nbytes ? nbytes : 1);
    if (!tmp) return gqe_fail(GQE_ERR_NOMEM, "out of host memory");
    gqe_status s = source_read(src, label, e->begin, tmp, nbytes);
    int32_t *dst = gqe_i32(t);
    for (size_t i = 0; s == GQE_OK && i < nbytes / 8; i++) {
        if (tmp[i] < INT32_MIN || tmp[i] > INT32_MAX)
            s = gqe_fail(GQE_ERR_FORMAT, "%s: tensor '%s': I64 element %zu = %lld does not fit in i32 "
                         "(I64 tensors are read as i32)", label, name, i, (long long)tmp[i]);
        else dst[i] = (int32_t)tmp[i];
    }
    free(tmp);
    return s;
}

/* Parses the header and loads every tensor into out. */
static gqe_status st_load(const char *label, const char *header, size_t hlen, uint64_t data_len,
                          const st_source *src, gqe_st_file *out) {
    memset(out, 0, sizeof *out);
    st_parser p = {.label = label, .out = out};
    if (sqlite3_open(":memory:", &p.db) != SQLITE_OK) {
        gqe_status s = gqe_fail(GQE_ERR_DB, "%s: cannot open an in-memory SQLite database: %s", label,
                                p.db ? sqlite3_errmsg(p.db) : "out of memory");
        sqlite3_close(p.db);
        return s;
    }
    gqe_status s = parse_header(&p, header, hlen, data_len);
    sqlite3_close(p.db);
    if (s == GQE_OK) s = check_entries(&p);
    if (s == GQE_OK) {
        out->names = calloc((size_t)p.n + 1, sizeof *out->names);
        out->tensors = calloc((size_t)p.n + 1, sizeof *out->tensors);
        if (!out->names || !out->tensors) s = gqe_fail(GQE_ERR_NOMEM, "out of host memory");
    }
    for (int i = 0; s == GQE_OK && i < p.n; i++) {
        out->names[i] = p.ents[i].name;
        p.ents[i].name = NULL;
        out->count = i + 1;
        s = load_tensor(src, label, out->names[i], &p.ents[i], &out->tensors[i]);
    }
    for (int i = 0; i < p.n; i++) free(p.ents[i].name);
    free(p.ents);
    if (s != GQE_OK) gqe_st_file_free(out);
    return s;
}

static uint64_t le64(const unsigned char *b) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | b[i];
    return v;
}

static gqe_status check_header_len(const char *label, uint64_t hlen, uint64_t size) {
    if (size < 8)
        return gqe_fail(GQE_ERR_FORMAT, "%s: %llu bytes is too short for a safetensors file (8-byte header length)",
                        label, (unsigned long long)size);
    if (hlen > size - 8)
        return gqe_fail(GQE_ERR_FORMAT, "%s: header length %llu exceeds the %llu bytes after the length field",
                        label, (unsigned long long)hlen, (unsigned long long)(size - 8));
    if (hlen > GQE_ST_MAX_HEADER)
        return gqe_fail(GQE_ERR_FORMAT, "%s: header length %llu exceeds the limit of %u bytes",
                        label, (unsigned long long)hlen, GQE_ST_MAX_HEADER);
    return GQE_OK;
}

gqe_status gqe_safetensors_parse(const void *buf, size_t len, const char *label, gqe_st_file *out) {
    memset(out, 0, sizeof *out);
    const unsigned char *b = buf;
    uint64_t hlen = len >= 8 ? le64(b) : 0;
    GQE_TRY(check_header_len(label, hlen, len));
    st_source src = {.mem = b + 8 + hlen, .fd = -1};
    return st_load(label, (const char *)b + 8, (size_t)hlen, len - 8 - hlen, &src, out);
}

gqe_status gqe_safetensors_read(const char *path, gqe_st_file *out) {
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return gqe_fail(GQE_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    gqe_status s = GQE_OK;
    if (fstat(fd, &sb) != 0) s = gqe_fail(GQE_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    else if (!S_ISREG(sb.st_mode)) s = gqe_fail(GQE_ERR_IO, "%s: not a regular file", path);
    uint64_t size = s == GQE_OK ? (uint64_t)sb.st_size : 0;
    unsigned char lenbuf[8];
    st_source src = {.fd = fd};
    if (s == GQE_OK && size >= 8) s = source_read(&src, path, 0, lenbuf, 8);
    uint64_t hlen = s == GQE_OK && size >= 8 ? le64(lenbuf) : 0;
    if (s == GQE_OK) s = check_header_len(path, hlen, size);
    char *header = NULL;
    if (s == GQE_OK && !(header = malloc(hlen + 1))) s = gqe_fail(GQE_ERR_NOMEM, "out of host memory");
    if (s == GQE_OK) s = source_read(&src, path, 8, header, (size_t)hlen);
    if (s == GQE_OK) {
        src.file_offset = 8 + hlen;
        s = st_load(path, header, (size_t)hlen, size - 8 - hlen, &src, out);
    }
    free(header);
    close(fd);
    return s;
}
