/* Start-up without MPI (llm.c's multi-GPU path does the same): rank 0
 * listens on MASTER_ADDR:MASTER_PORT and hands every other rank the bytes
 * it needs (NCCL's unique id). A rank that cannot connect before the
 * deadline, or a peer from another job, is an error naming the address. */
#include "internal.h"
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HELLO_MAGIC 0x67716531u   /* "gqe1" */

typedef struct { uint32_t magic, rank, world, len; } hello;

static bool io_all(int fd, void *buf, size_t n, bool write_it, double deadline) {
    char *p = buf;
    while (n > 0) {
        int ms = (int)((deadline - gqe_dist_now()) * 1000);
        if (ms <= 0) return false;
        struct pollfd pf = {fd, (short)(write_it ? POLLOUT : POLLIN), 0};
        if (poll(&pf, 1, ms < 1000 ? ms : 1000) < 0 && errno != EINTR) return false;
        if (!(pf.revents & (write_it ? POLLOUT : POLLIN | POLLHUP))) continue;
        ssize_t r = write_it ? send(fd, p, n, MSG_NOSIGNAL) : recv(fd, p, n, 0);
        if (r <= 0) { if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue; return false; }
        p += r;
        n -= (size_t)r;
    }
    return true;
}

static gqe_status serve(int port, int world, const void *buf, size_t len, double deadline) {
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    bool v6 = fd >= 0;
    if (!v6) fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return gqe_fail(GQE_ERR_IO, "rendezvous: socket: %s", strerror(errno));
    int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int rc;
    if (v6) {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);   /* IPv4 peers too */
        struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port), .sin6_addr = in6addr_any};
        rc = bind(fd, (struct sockaddr *)&a, sizeof a);
    } else {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_ANY)};
        rc = bind(fd, (struct sockaddr *)&a, sizeof a);
    }
    if (rc != 0 || listen(fd, world) != 0) {
        int e = errno;
        close(fd);
        return gqe_fail(GQE_ERR_IO, "rank 0 cannot listen on MASTER_PORT %d: %s (another job may hold it: set MASTER_PORT)",
                        port, strerror(e));
    }
    gqe_status st = GQE_OK;
    for (int served = 1; served < world && st == GQE_OK;) {
        int ms = (int)((deadline - gqe_dist_now()) * 1000);
        struct pollfd pf = {fd, POLLIN, 0};
        if (ms <= 0) {
            st = gqe_fail(GQE_ERR_DEVICE, "rendezvous: rank 0 heard from %d of %d ranks before the deadline on port %d "
                          "(did every rank start, with the same MASTER_ADDR and MASTER_PORT?)", served, world, port);
            break;
        }
        if (poll(&pf, 1, ms < 1000 ? ms : 1000) <= 0) continue;
        int cfd = accept(fd, NULL, NULL);
        if (cfd < 0) continue;
        hello h;
        if (!io_all(cfd, &h, sizeof h, false, deadline) || h.magic != HELLO_MAGIC) {
            close(cfd);   /* not one of ours (a port scan, another program) */
            continue;
        }
        if (h.world != (uint32_t)world || h.len != len)
            st = gqe_fail(GQE_ERR_ARG, "rendezvous: rank %u says world size %u but rank 0 has %d: the ranks were "
                          "launched differently", h.rank, h.world, world);
        else if (!io_all(cfd, (void *)buf, len, true, deadline))
            st = gqe_fail(GQE_ERR_IO, "rendezvous: sending to rank %u failed", h.rank);
        else
            served++;
        close(cfd);
    }
    close(fd);
    return st;
}

static gqe_status fetch(const char *addr, int port, int rank, int world, void *buf, size_t len, double deadline,
                        double timeout_s) {
    char ports[16];
    snprintf(ports, sizeof ports, "%d", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int gai = getaddrinfo(addr, ports, &hints, &res);
    if (gai != 0) return gqe_fail(GQE_ERR_ARG, "MASTER_ADDR '%s' does not resolve: %s", addr, gai_strerror(gai));
    const char *why = "no answer";
    while (gqe_dist_now() < deadline) {
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
            int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
            if (fd < 0) continue;
            if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
                hello h = {HELLO_MAGIC, (uint32_t)rank, (uint32_t)world, (uint32_t)len};
                bool ok = io_all(fd, &h, sizeof h, true, deadline) && io_all(fd, buf, len, false, deadline);
                close(fd);
                freeaddrinfo(res);
                if (ok) return GQE_OK;
                return gqe_fail(GQE_ERR_DEVICE, "rendezvous: rank 0 at %s:%d closed the connection (see its message)", addr, port);
            }
            why = strerror(errno);
            close(fd);
        }
        nanosleep(&(struct timespec){0, 100000000}, NULL);   /* rank 0 may not be listening yet */
    }
    freeaddrinfo(res);
    return gqe_fail(GQE_ERR_DEVICE, "rank %d cannot reach rank 0 at MASTER_ADDR %s:%d within %.0f s (%s)", rank, addr, port,
                    timeout_s, why);
}

gqe_status gqe_dist_rendezvous(const char *addr, int port, int rank, int world, void *buf, size_t len, double timeout_s) {
    if (world <= 1) return GQE_OK;
    double deadline = gqe_dist_now() + timeout_s;
    if (rank == 0) return serve(port, world, buf, len, deadline);
    if (!addr || !*addr) return gqe_fail(GQE_ERR_ARG, "rank %d: MASTER_ADDR is not set (the host of rank 0)", rank);
    return fetch(addr, port, rank, world, buf, len, deadline, timeout_s);
}
