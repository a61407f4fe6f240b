/* Data-parallel start-up without a second process: rank and world from
 * each launcher's variables (and every malformed value), the first host of
 * Slurm node lists, and the TCP rendezvous between threads on localhost.
 * The collectives themselves run under mpirun in tests/cli/test_dist.sh. */
#include "testutil.h"
#include "dist/internal.h"
#include <pthread.h>
#include <unistd.h>
#include <string.h>

typedef struct { const char *const *kv; } fake_env;

static const char *lookup(void *ctx, const char *name) {
    for (const char *const *p = ((fake_env *)ctx)->kv; *p; p += 2)
        if (strcmp(p[0], name) == 0) return p[1];
    return NULL;
}

static gqe_status read_env(gqe_dist_env *e, const char *const *kv) {
    fake_env f = {kv};
    return gqe_dist_env_read(e, lookup, &f);
}

#define ASSERT_MSG_HAS(needle) do { if (!strstr(gqe_last_error(), (needle))) \
    fail_msg("message lacks '%s': %s", (needle), gqe_last_error()); } while (0)

static void test_single(void **state) {
    (void)state;
    gqe_dist_env e;
    CHECK_OK(read_env(&e, (const char *const[]){NULL}));
    assert_int_equal(e.world, 1);
    assert_int_equal(e.rank, 0);
    assert_string_equal(e.source, "single");
    assert_int_equal(e.master_port, 29500);
}

static void test_torchrun(void **state) {
    (void)state;
    gqe_dist_env e;
    CHECK_OK(read_env(&e, (const char *const[]){"RANK", "5", "WORLD_SIZE", "8", "LOCAL_RANK", "1",
                                                 "MASTER_ADDR", "node7", "MASTER_PORT", "1234", NULL}));
    assert_int_equal(e.rank, 5);
    assert_int_equal(e.world, 8);
    assert_int_equal(e.local_rank, 1);
    assert_string_equal(e.master_addr, "node7");
    assert_int_equal(e.master_port, 1234);
    assert_string_equal(e.source, "torchrun");
    /* no MASTER_ADDR: this node */
    CHECK_OK(read_env(&e, (const char *const[]){"RANK", "1", "WORLD_SIZE", "2", NULL}));
    assert_string_equal(e.master_addr, "127.0.0.1");
    assert_int_equal(e.local_rank, 1);
}

static void test_mpirun(void **state) {
    (void)state;
    gqe_dist_env e;
    CHECK_OK(read_env(&e, (const char *const[]){"OMPI_COMM_WORLD_RANK", "3", "OMPI_COMM_WORLD_SIZE", "4",
                                                 "OMPI_COMM_WORLD_LOCAL_RANK", "1", NULL}));
    assert_int_equal(e.rank, 3);
    assert_int_equal(e.world, 4);
    assert_int_equal(e.local_rank, 1);
    assert_string_equal(e.source, "mpirun");
    assert_string_equal(e.master_addr, "");
}

static void test_slurm(void **state) {
    (void)state;
    gqe_dist_env e;
    CHECK_OK(read_env(&e, (const char *const[]){"SLURM_PROCID", "9", "SLURM_NTASKS", "16", "SLURM_LOCALID", "1",
                                                 "SLURM_JOB_NODELIST", "gpu[007-008,012],login1", NULL}));
    assert_int_equal(e.rank, 9);
    assert_int_equal(e.world, 16);
    assert_int_equal(e.local_rank, 1);
    assert_string_equal(e.master_addr, "gpu007");
    assert_string_equal(e.source, "slurm");
    /* torchrun's variables win over Slurm's (torchrun inside an allocation) */
    CHECK_OK(read_env(&e, (const char *const[]){"SLURM_PROCID", "0", "SLURM_NTASKS", "2", "SLURM_JOB_NODELIST", "a",
                                                 "RANK", "3", "WORLD_SIZE", "4", NULL}));
    assert_int_equal(e.rank, 3);
    assert_string_equal(e.source, "torchrun");
}

static void test_nodelist(void **state) {
    (void)state;
    char h[64];
    static const char *const cases[][2] = {
        {"node1", "node1"}, {"node1,node2", "node1"}, {"n[3]", "n3"}, {"gpu[01-04,09]", "gpu01"},
        {"a[10-11]-ib,b", "a10-ib"}, {"x-y.z", "x-y.z"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        CHECK_OK(gqe_slurm_first_host(cases[i][0], h, sizeof h));
        assert_string_equal(h, cases[i][1]);
    }
    assert_int_not_equal(gqe_slurm_first_host("", h, sizeof h), GQE_OK);
    assert_int_not_equal(gqe_slurm_first_host("n[", h, sizeof h), GQE_OK);
    assert_int_not_equal(gqe_slurm_first_host("n[1-2", h, sizeof h), GQE_OK);
    assert_int_not_equal(gqe_slurm_first_host("abcdef", h, 4), GQE_OK);
}

static void test_bad_values(void **state) {
    (void)state;
    gqe_dist_env e;
    assert_int_equal(read_env(&e, (const char *const[]){"RANK", "2", "WORLD_SIZE", "2", NULL}), GQE_ERR_ARG);
    ASSERT_MSG_HAS("RANK='2'");
    assert_int_equal(read_env(&e, (const char *const[]){"RANK", "x", "WORLD_SIZE", "2", NULL}), GQE_ERR_ARG);
    ASSERT_MSG_HAS("RANK='x'");
    assert_int_equal(read_env(&e, (const char *const[]){"RANK", "0", "WORLD_SIZE", "0", NULL}), GQE_ERR_ARG);
    ASSERT_MSG_HAS("WORLD_SIZE");
    assert_int_equal(read_env(&e, (const char *const[]){"RANK", "0", NULL}), GQE_ERR_ARG);
    ASSERT_MSG_HAS("WORLD_SIZE is not");
    assert_int_equal(read_env(&e, (const char *const[]){"RANK", "0", "WORLD_SIZE", "2", "MASTER_PORT", "70000", NULL}),
                     GQE_ERR_ARG);
    ASSERT_MSG_HAS("MASTER_PORT");
    assert_int_equal(read_env(&e, (const char *const[]){"SLURM_PROCID", "0", "SLURM_NTASKS", "2", NULL}), GQE_ERR_ARG);
    ASSERT_MSG_HAS("SLURM_JOB_NODELIST");
}

/* ---- rendezvous: rank 0 hands its bytes to the others ---- */
typedef struct { int rank, world, port; char buf[32]; gqe_status st; double timeout; const char *addr; } peer;

static void *run_peer(void *arg) {
    peer *p = arg;
    p->st = gqe_dist_rendezvous(p->addr, p->port, p->rank, p->world, p->buf, sizeof p->buf, p->timeout);
    return NULL;
}

static int free_port(void) { return 20000 + (int)(getpid() % 20000); }

static void test_rendezvous(void **state) {
    (void)state;
    enum { W = 3 };
    peer p[W];
    pthread_t th[W];
    int port = free_port();
    for (int r = 0; r < W; r++) {
        p[r] = (peer){.rank = r, .world = W, .port = port, .timeout = 20, .addr = "127.0.0.1"};
        if (r == 0) strcpy(p[r].buf, "the unique id");
    }
    /* the others start first: they retry until rank 0 listens */
    for (int r = W - 1; r >= 0; r--) assert_int_equal(pthread_create(&th[r], NULL, run_peer, &p[r]), 0);
    for (int r = 0; r < W; r++) pthread_join(th[r], NULL);
    for (int r = 0; r < W; r++) {
        if (p[r].st != GQE_OK) fail_msg("rank %d: %s", r, gqe_last_error());
        assert_string_equal(p[r].buf, "the unique id");
    }
}

static void test_rendezvous_unreachable(void **state) {
    (void)state;
    char buf[8];
    /* nobody listens on this port: a bounded wait and a message naming the address */
    assert_int_not_equal(gqe_dist_rendezvous("127.0.0.1", free_port() + 1, 1, 2, buf, sizeof buf, 0.5), GQE_OK);
    ASSERT_MSG_HAS("MASTER_ADDR 127.0.0.1");
    assert_int_not_equal(gqe_dist_rendezvous("no-such-host.invalid", 1234, 1, 2, buf, sizeof buf, 0.5), GQE_OK);
    ASSERT_MSG_HAS("no-such-host.invalid");
    /* rank 0 alone: nobody comes */
    assert_int_not_equal(gqe_dist_rendezvous("", free_port() + 2, 0, 2, buf, sizeof buf, 0.5), GQE_OK);
    ASSERT_MSG_HAS("1 of 2 ranks");
}

static void test_open_errors(void **state) {
    (void)state;
    gqe_dist_env e;
    CHECK_OK(read_env(&e, (const char *const[]){"RANK", "0", "WORLD_SIZE", "2", NULL}));
    gqe_comm *c;
    assert_int_equal(gqe_comm_open(&c, &e, &(gqe_comm_options){.backend = "gloo"}), GQE_ERR_ARG);
    ASSERT_MSG_HAS("allowed: mpi, nccl");
    /* MPI needs its own launcher: torchrun-style variables are refused before libmpi loads */
    assert_int_equal(gqe_comm_open(&c, &e, &(gqe_comm_options){.backend = "mpi"}), GQE_ERR_ARG);
    ASSERT_MSG_HAS("mpirun");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single), cmocka_unit_test(test_torchrun), cmocka_unit_test(test_mpirun),
        cmocka_unit_test(test_slurm), cmocka_unit_test(test_nodelist), cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_rendezvous), cmocka_unit_test(test_rendezvous_unreachable),
        cmocka_unit_test(test_open_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
