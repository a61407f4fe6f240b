/* One temporary directory per test binary, for tests that write files:
 * made by the group setup, removed with everything in it by the group
 * teardown. Include after testutil.h. */
#ifndef GQE_TMPDIR_H
#define GQE_TMPDIR_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char tmpdir[64];

/* tmpl: a mkdtemp template, "/tmp/gqe_<name>_XXXXXX". */
static int tmpdir_make(const char *tmpl) {
    snprintf(tmpdir, sizeof tmpdir, "%s", tmpl);
    return mkdtemp(tmpdir) ? 0 : -1;
}
static int remove_dir(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* tmpdir/name, in one of eight rotating buffers: a call may take several. */
static char *tmp_path(const char *name) {
    static char buf[8][256];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 256, "%s/%s", tmpdir, name);
    return p;
}
#endif
