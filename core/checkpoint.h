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
    char *run_uid;           /* the run's random id (runs.uid), NULL for none; malloc'd on load */
    char *config_hash;       /* the run's config hash, NULL for none; malloc'd on load */
    int verified;            /* on load: 1 when the file carried a checksum and it matched,
                                0 for a file written before checksums existed */
} gqe_checkpoint_info;

/* opt, when given, must be the optimizer of lm's parameters (created over
 * gqe_lm_params(lm)); any other is refused before a byte is read or written.
 * The metadata also holds a checksum of every tensor's name and bytes. */
gqe_status gqe_checkpoint_save(const char *path, gqe_lm *lm, gqe_optimizer *opt, const gqe_checkpoint_info *info);
/* Restores into an lm (and opt, when not NULL) built from the same config:
 * every tensor must be present with the same shape, and the checksum must
 * match the data (a mismatch is GQE_ERR_FORMAT and nothing is restored). The
 * strings of info are malloc'd: free them with gqe_checkpoint_info_free. */
gqe_status gqe_checkpoint_load(const char *path, gqe_lm *lm, gqe_optimizer *opt, gqe_checkpoint_info *info);
/* The same, refusing (GQE_ERR_FORMAT, before anything is restored) a file
 * whose identity differs from expect's: its run_uid and config_hash when
 * not NULL (a file without them fails too), its step when >= 0. */
gqe_status gqe_checkpoint_load_expecting(const char *path, gqe_lm *lm, gqe_optimizer *opt,
                                         const gqe_checkpoint_info *expect, gqe_checkpoint_info *info);
void gqe_checkpoint_info_free(gqe_checkpoint_info *info);
#endif
