/* Learning-rate schedules: constant, cosine, warmup-stable-decay. The formulas
 * are stated in core/optim.h. */
#include "optim.h"
#include <math.h>
#include <string.h>

gqe_schedule_config gqe_schedule_config_default(void) {
    return (gqe_schedule_config){
        .kind = GQE_SCHEDULE_CONSTANT, .warmup = 0, .total = 0, .min_lr = 0.1f, .decay_frac = 0.2f,
    };
}

static const char *const kind_names[] = {"constant", "cosine", "wsd"};

const char *gqe_schedule_kind_name(gqe_schedule_kind kind) {
    return (unsigned)kind < sizeof kind_names / sizeof *kind_names ? kind_names[kind] : "?";
}

gqe_status gqe_schedule_kind_parse(const char *name, gqe_schedule_kind *out) {
    for (unsigned i = 0; i < sizeof kind_names / sizeof *kind_names; i++)
        if (name && strcmp(name, kind_names[i]) == 0) { *out = (gqe_schedule_kind)i; return GQE_OK; }
    return gqe_fail(GQE_ERR_ARG, "unknown schedule.kind '%s' (allowed: constant, cosine, wsd)",
                    name ? name : "(null)");
}

static int64_t wsd_decay_steps(const gqe_schedule_config *c) {
    return (int64_t)llround((double)c->decay_frac * (double)c->total);
}

gqe_status gqe_schedule_config_validate(const gqe_schedule_config *c) {
    if ((unsigned)c->kind > GQE_SCHEDULE_WSD)
        return gqe_fail(GQE_ERR_ARG, "schedule.kind must be one of constant, cosine, wsd, got %d", (int)c->kind);
    if (c->warmup < 0)
        return gqe_fail(GQE_ERR_ARG, "schedule.warmup must be >= 0, got %lld", (long long)c->warmup);
    if (c->total < 0)
        return gqe_fail(GQE_ERR_ARG, "schedule.total must be >= 0, got %lld", (long long)c->total);
    if (!(c->min_lr >= 0.0f && c->min_lr <= 1.0f))
        return gqe_fail(GQE_ERR_ARG, "schedule.min_lr must be in [0, 1] (a fraction of the base lr), got %g",
                        (double)c->min_lr);
    if (!(c->decay_frac > 0.0f && c->decay_frac <= 1.0f))
        return gqe_fail(GQE_ERR_ARG, "schedule.decay_frac must be in (0, 1], got %g", (double)c->decay_frac);
    if (c->kind != GQE_SCHEDULE_CONSTANT && c->total <= c->warmup)
        return gqe_fail(GQE_ERR_ARG, "schedule.total must be > schedule.warmup (%lld) for %s, got %lld",
                        (long long)c->warmup, gqe_schedule_kind_name(c->kind), (long long)c->total);
    if (c->kind == GQE_SCHEDULE_WSD && c->total - wsd_decay_steps(c) < c->warmup)
        return gqe_fail(GQE_ERR_ARG,
                        "schedule.decay_frac %g of schedule.total %lld starts the decay at step %lld, "
                        "before schedule.warmup (%lld) ends",
                        (double)c->decay_frac, (long long)c->total,
                        (long long)(c->total - wsd_decay_steps(c)), (long long)c->warmup);
    return GQE_OK;
}

float gqe_schedule_lr(const gqe_schedule_config *c, float base_lr, int64_t step) {
    if (step < 0) step = 0;
    double base = base_lr, f = c->min_lr;
    if (step < c->warmup) return (float)(base * (double)(step + 1) / (double)c->warmup);
    switch (c->kind) {
    case GQE_SCHEDULE_COSINE: {
        double span = (double)(c->total - c->warmup);
        double p = span > 0 ? (double)(step - c->warmup) / span : 1.0;
        if (p > 1.0) p = 1.0;
        return (float)(base * (f + (1.0 - f) * 0.5 * (1.0 + cos(M_PI * p))));
    }
    case GQE_SCHEDULE_WSD: {
        int64_t d = wsd_decay_steps(c), s0 = c->total - d;
        if (step < s0) return base_lr;
        double p = d > 0 ? (double)(step - s0) / (double)d : 1.0;
        if (p > 1.0) p = 1.0;
        return (float)(base * (1.0 - (1.0 - f) * p));
    }
    case GQE_SCHEDULE_CONSTANT:
    default:
        return base_lr;
    }
}
