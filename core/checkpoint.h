/* Checkpoints: one safetensors file holding everything a run needs to go on
 * exactly where it stopped: the model's parameters under their PyTorch names
 * (so torch's load_state_dict takes them as they are), the optimizer state
 * per parameter ("optim.<state>.<name>"), balanced-router biases, and in the
 * metadata the step, the data position, the random router's counters and the
 * run's config. Written atomically (temporary file, then rename). */
#ifndef GQE_CHECKPOINT_H
#define GQE_CHECKPOINT_H
#include "nn/lm.h"
#include "optim.h"

typedef struct gqe_checkpoint_info {
    int64_t step;            /* optimizer steps done */
    int64_t data_index;      /* next training batch index */
    char *config_json;       /* the run's config (owned; loaded copies are malloc'd) */
} gqe_checkpoint_info;

gqe_status gqe_checkpoint_save(const char *path, gqe_lm *lm, gqe_optimizer *opt, const gqe_checkpoint_info *info);
/* Restores into an lm (and opt, when not NULL) built from the same config:
 * every tensor must be present with the same shape. info->config_json is
 * malloc'd (free it). */
gqe_status gqe_checkpoint_load(const char *path, gqe_lm *lm, gqe_optimizer *opt, gqe_checkpoint_info *info);
#endif
