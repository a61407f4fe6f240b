#include "size.h"
#include <stdio.h>

bool gqe_mul_ok(int64_t a, int64_t b, int64_t *out) {
    if (a < 0 || b < 0 || a > GQE_MAX_NUMEL || b > GQE_MAX_NUMEL) return false;
    int64_t p;
    if (__builtin_mul_overflow(a, b, &p) || p > GQE_MAX_NUMEL) return false;
    *out = p;
    return true;
}

bool gqe_add_ok(int64_t a, int64_t b, int64_t *out) {
    if (a < 0 || b < 0 || a > GQE_MAX_NUMEL || b > GQE_MAX_NUMEL || a + b > GQE_MAX_NUMEL) return false;
    *out = a + b;
    return true;
}

/* "3 x 4 x 5" into buf. */
static const char *factors_str(int n, const int64_t *f, char *buf, size_t cap) {
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < n && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, i ? " x %lld" : "%lld", (long long)f[i]);
    return buf;
}

gqe_status gqe_size_product(const char *what, int n, const int64_t *factors, int64_t *out) {
    int64_t p = 1;
    char buf[160];
    for (int i = 0; i < n; i++) {
        if (factors[i] < 0)
            return gqe_fail(GQE_ERR_ARG, "%s: size %s has a negative factor", what, factors_str(n, factors, buf, sizeof buf));
        if (!gqe_mul_ok(p, factors[i], &p))
            return gqe_fail(GQE_ERR_ARG, "%s: size %s is too large (more than 2^48 elements)", what,
                            factors_str(n, factors, buf, sizeof buf));
    }
    *out = p;
    return GQE_OK;
}

gqe_status gqe_shape_numel(const char *what, int ndim, const int64_t *shape, int64_t *numel) {
    int64_t p = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || !gqe_mul_ok(p, shape[i], &p)) {
            char buf[160] = "(";
            size_t len = 1;
            for (int j = 0; j < ndim && len < sizeof buf; j++)
                len += (size_t)snprintf(buf + len, sizeof buf - len, j ? ", %lld" : "%lld", (long long)shape[j]);
            if (len < sizeof buf) snprintf(buf + len, sizeof buf - len, ")");
            return gqe_fail(shape[i] < 0 ? GQE_ERR_SHAPE : GQE_ERR_ARG,
                            shape[i] < 0 ? "%s: shape %s has a negative dimension"
                                         : "%s: shape %s has too many elements (more than 2^48)", what, buf);
        }
    }
    *numel = p;
    return GQE_OK;
}

gqe_status gqe_size_bytes(const char *what, int64_t numel, size_t elem_size, size_t *bytes) {
    if (numel < 0 || numel > GQE_MAX_NUMEL || elem_size > 16)
        return gqe_fail(GQE_ERR_ARG, "%s: %lld elements of %zu bytes is too large", what, (long long)numel, elem_size);
    *bytes = (size_t)numel * elem_size;
    return GQE_OK;
}
