/* The floor of a durable single-event HTTP server on this machine, for collector/bench/run.sh.
 *
 * Not a product: a minimal server that does the least work that a durable `POST /v1/events`
 * needs (read an HTTP/1.1 request with a Content-Length body, append the body to a file,
 * fdatasync it, answer 202), with the best structure for it: one event loop per CPU (epoll,
 * SO_REUSEPORT, like nginx), and one log thread doing group commit (what arrived during an
 * fdatasync goes into the next one) that wakes each event loop once per group (eventfd).
 * No JSON parsing, validation, allocation per request, or streaming out of the log.
 *
 *   floor <port> <log file> <always|prewritten|never> [event loops]
 *
 * "prewritten" is "always" into a file of 256 MiB of zeros written and synced first (pwrite at an
 * offset: no block allocation or size change for fdatasync to journal). With "never" the body is appended to the log's buffer and answered at once (the log thread
 * still writes it). Its ratio to nginx bounds what any durable server can reach here.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXCONN 4096
#define BUF 65536
#define MAXLOOPS 16

static const char RESP[] = "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";

struct conn {
    int fd;
    size_t len;
    uint64_t waiting; /* log offset that must be durable before answering; 0 = none */
    char buf[BUF];
};

struct loop {
    int ep, efd, lfd;
    struct conn **waiters;
    size_t nwait;
};

static int sync_each;
static int log_fd;
static off_t log_at = -1; /* with "prewritten": where the next write goes (pwrite into zeros) */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static char *pending;
static size_t pending_len, pending_cap;
static uint64_t appended; /* bytes handed to the log (under mu) */
static _Atomic uint64_t durable;
static struct loop loops[MAXLOOPS];
static int nloops;

static uint64_t log_append(const char *p, size_t n) {
    pthread_mutex_lock(&mu);
    if (pending_len + n > pending_cap) {
        pending_cap = (pending_len + n) * 2;
        pending = realloc(pending, pending_cap);
    }
    memcpy(pending + pending_len, p, n);
    pending_len += n;
    appended += n;
    uint64_t end = appended;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
    return end;
}

static void *log_thread(void *arg) {
    (void)arg;
    char *mine = NULL;
    size_t cap = 0;
    for (;;) {
        pthread_mutex_lock(&mu);
        while (pending_len == 0) pthread_cond_wait(&cv, &mu);
        char *t = mine; mine = pending; pending = t;
        size_t n = pending_len, c = cap; cap = pending_cap; pending_cap = c;
        pending_len = 0;
        uint64_t end = appended;
        pthread_mutex_unlock(&mu);
        ssize_t w = log_at >= 0 ? pwrite(log_fd, mine, n, log_at) : write(log_fd, mine, n);
        if (w != (ssize_t)n) { perror("write"); exit(1); }
        if (log_at >= 0) log_at += (off_t)n;
        if (sync_each && fdatasync(log_fd) != 0) { perror("fdatasync"); exit(1); }
        atomic_store(&durable, end);
        if (sync_each) {
            uint64_t one = 1;
            for (int i = 0; i < nloops; i++) if (write(loops[i].efd, &one, 8) < 0) {}
        }
    }
    return NULL;
}

static void answer(struct conn *c) {
    c->waiting = 0;
    if (write(c->fd, RESP, sizeof RESP - 1) < 0) {}
}

/* Handles every complete request in the connection's buffer; false when it is closed. */
static int serve(struct loop *l, struct conn *c) {
    for (;;) {
        ssize_t r = read(c->fd, c->buf + c->len, BUF - c->len);
        if (r == 0 || (r < 0 && errno != EAGAIN)) return 0;
        if (r < 0) break;
        c->len += (size_t)r;
        if (c->len < BUF) break;
    }
    for (;;) {
        char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (!end) return c->len < BUF;
        size_t head = (size_t)(end - c->buf) + 4, body = 0;
        for (char *p = c->buf; p && p < end;) {
            if (strncasecmp(p, "content-length:", 15) == 0) body = strtoul(p + 15, NULL, 10);
            char *nl = memchr(p, '\n', (size_t)(end - p));
            p = nl ? nl + 1 : NULL;
        }
        if (head + body > BUF) return 0;
        if (c->len < head + body) return 1;
        uint64_t at = log_append(c->buf + head, body);
        if (sync_each) {
            c->waiting = at;
            l->waiters[l->nwait++] = c;
        } else {
            answer(c);
        }
        memmove(c->buf, c->buf + head + body, c->len - head - body);
        c->len -= head + body;
    }
}

static void *run_loop(void *arg) {
    struct loop *l = arg;
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(l->ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == NULL) { /* listener */
                int fd;
                while ((fd = accept4(l->lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    int one = 1;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *c = calloc(1, sizeof *c);
                    c->fd = fd;
                    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = c};
                    epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev);
                }
            } else if (p == (void *)l) { /* the log made a group durable */
                uint64_t v;
                if (read(l->efd, &v, 8) < 0) {}
                uint64_t d = atomic_load(&durable);
                size_t keep = 0;
                for (size_t j = 0; j < l->nwait; j++) {
                    struct conn *c = l->waiters[j];
                    if (c->waiting <= d) answer(c); else l->waiters[keep++] = c;
                }
                l->nwait = keep;
            } else {
                struct conn *c = p;
                if (c->waiting) continue; /* one request at a time per connection */
                if (!serve(l, c)) {
                    close(c->fd);
                    free(c); /* (a closed connection never has a waiting request here) */
                }
            }
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: floor <port> <log file> <always|prewritten|never> [loops]\n"); return 2; }
    sync_each = strcmp(argv[3], "never") != 0;
    int prewritten = strcmp(argv[3], "prewritten") == 0;
    nloops = argc > 4 ? atoi(argv[4]) : 2;
    if (nloops < 1 || nloops > MAXLOOPS) nloops = 2;
    log_fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | (prewritten ? 0 : O_APPEND), 0644);
    if (log_fd < 0) { perror("open"); return 1; }
    if (prewritten) { /* 256 MiB of written zeros, synced: later writes within them change no metadata */
        static char zeros[1 << 20];
        for (int i = 0; i < 256; i++)
            if (write(log_fd, zeros, sizeof zeros) != (ssize_t)sizeof zeros) { perror("write"); return 1; }
        if (fsync(log_fd) != 0) { perror("fsync"); return 1; }
        log_at = 0;
    }
    pthread_t t;
    pthread_create(&t, NULL, log_thread, NULL);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int i = 0; i < nloops; i++) {
        struct loop *l = &loops[i];
        l->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        int one = 1;
        setsockopt(l->lfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
        if (bind(l->lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(l->lfd, 1024) != 0) {
            perror("bind/listen");
            return 1;
        }
        l->ep = epoll_create1(0);
        l->efd = eventfd(0, EFD_NONBLOCK);
        l->waiters = calloc(MAXCONN, sizeof *l->waiters);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
        epoll_ctl(l->ep, EPOLL_CTL_ADD, l->lfd, &ev);
        struct epoll_event ee = {.events = EPOLLIN, .data.ptr = l};
        epoll_ctl(l->ep, EPOLL_CTL_ADD, l->efd, &ee);
    }
    for (int i = 1; i < nloops; i++) pthread_create(&t, NULL, run_loop, &loops[i]);
    run_loop(&loops[0]);
    return 0;
}
