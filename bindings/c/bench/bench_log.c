/*
 * ns per evlog_log() of a ~200-byte event, from THREADS threads at once (bindings/c/bench/run.sh).
 *
 * Usage: bench_log SCHEMAS_DIR THREADS EVENTS_PER_THREAD
 * Sink: null (every event is still validated against its schema on the flush thread). Each call
 * is timed with clock_gettime(CLOCK_MONOTONIC); the timer's own cost (median of empty timings) is
 * printed and subtracted. Events are logged in chunks that fit the queue, with an untimed
 * evlog_flush between chunks, so every timed call is an accepted event; the run fails if any
 * call was refused or any event dropped.
 */
#define _GNU_SOURCE
#include <evlog.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHUNK 20000

static evlog_handle *h;
static long per_thread;
static pthread_barrier_t start;

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

struct worker {
    uint32_t *samples;
    long refused;
};

static void *run(void *arg) {
    struct worker *w = arg;
    char event[512];
    /* ~200 bytes, as an app would build it. */
    int n = snprintf(event, sizeof event,
                     "{\"user_id\": 1234567, \"amount\": \"19.99\", \"currency\": \"EUR\", "
                     "\"coupon\": \"WINTER\", \"items\": [{\"sku\": \"A-100\", \"price\": \"9.99\", "
                     "\"qty\": 1}, {\"sku\": \"B-1\", \"price\": \"10.00\", \"qty\": 1}]}");
    pthread_barrier_wait(&start);
    for (long done = 0; done < per_thread;) {
        long end = done + CHUNK < per_thread ? done + CHUNK : per_thread;
        for (; done < end; done++) {
            uint64_t t0 = now_ns();
            evlog_status st = evlog_log(h, "events", "transaction", event, (size_t)n);
            uint64_t t1 = now_ns();
            w->samples[done] = (uint32_t)(t1 - t0);
            w->refused += st != EVLOG_OK;
        }
        if (evlog_flush(h, 60000) != EVLOG_OK)
            w->refused++;
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s SCHEMAS_DIR THREADS EVENTS_PER_THREAD\n", argv[0]);
        return 2;
    }
    int threads = atoi(argv[2]);
    per_thread = atol(argv[3]);
    char config[2048], err[512];
    snprintf(config, sizeof config,
             "[sink]\nkind = \"null\"\n[schemas]\ndir = \"%s\"\n[queue]\ncapacity = %d\n",
             argv[1], CHUNK * threads + 1000);
    if (evlog_open(config, &h, err, sizeof err) != EVLOG_OK) {
        fprintf(stderr, "evlog_open: %s\n", err);
        return 1;
    }

    /* The timer's own cost. */
    uint32_t empty[10001];
    for (int i = 0; i < 10001; i++) {
        uint64_t t0 = now_ns();
        uint64_t t1 = now_ns();
        empty[i] = (uint32_t)(t1 - t0);
    }
    qsort(empty, 10001, sizeof empty[0], cmp_u32);
    uint32_t overhead = empty[5000];

    /* Warm up: start the flush thread, touch the allocator. */
    const char *warm = "{\"user_id\": 1}";
    for (int i = 0; i < 1000; i++)
        evlog_log(h, "events", "transaction", warm, strlen(warm));
    evlog_flush(h, 60000);

    pthread_barrier_init(&start, NULL, (unsigned)threads);
    pthread_t *t = calloc((size_t)threads, sizeof *t);
    struct worker *w = calloc((size_t)threads, sizeof *w);
    for (int i = 0; i < threads; i++) {
        w[i].samples = calloc((size_t)per_thread, sizeof(uint32_t));
        pthread_create(&t[i], NULL, run, &w[i]);
    }
    long refused = 0;
    size_t total = (size_t)threads * (size_t)per_thread;
    uint32_t *all = malloc(total * sizeof(uint32_t));
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        refused += w[i].refused;
        memcpy(all + (size_t)i * (size_t)per_thread, w[i].samples,
               (size_t)per_thread * sizeof(uint32_t));
        free(w[i].samples);
    }
    qsort(all, total, sizeof all[0], cmp_u32);
    uint32_t median = all[total / 2], p99 = all[total * 99 / 100];
    if (evlog_shutdown(h, 60000) != EVLOG_OK)
        refused++;
    evlog_counters c;
    evlog_stats(h, &c);
    evlog_close(h, 1000);
    printf("threads=%d events=%zu median_ns=%" PRIu32 " p99_ns=%" PRIu32
           " (timer overhead %" PRIu32 " ns subtracted) delivered=%" PRIu64 " dropped=%" PRIu64
           " rejected=%" PRIu64 "\n",
           threads, total, median > overhead ? median - overhead : 0,
           p99 > overhead ? p99 - overhead : 0, overhead, c.delivered, c.dropped, c.rejected);
    free(all);
    free(t);
    free(w);
    if (refused || c.dropped || c.rejected || c.delivered != total + 1000) {
        fprintf(stderr, "FAIL: %ld refused calls or flush timeouts, %" PRIu64 " dropped, %" PRIu64
                        " rejected, %" PRIu64 " delivered (want %zu)\n",
                refused, c.dropped, c.rejected, c.delivered, total + 1000);
        return 1;
    }
    return 0;
}
