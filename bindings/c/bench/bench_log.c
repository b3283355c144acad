/*
 * ns per evlog_log() of a ~200-byte event, from THREADS threads at once (bindings/c/bench/run.sh).
 *
 * Usage: bench_log SCHEMAS_DIR THREADS EVENTS_PER_THREAD [page_view|transaction]
 * The two events are both ~200 bytes; the transaction (NUMERIC strings, a repeated record) costs
 * the flush thread about twice as much to validate, which on a 2-core machine shows up in the
 * caller's latency too.
 * Sink: null (every event is still validated against its schema on the flush thread). Each call
 * is timed with the CPU's timestamp counter (x86_64; calibrated against CLOCK_MONOTONIC; elsewhere
 * CLOCK_MONOTONIC itself), which costs a few ns instead of clock_gettime's 20-40 ns and its
 * jitter; the timer's own cost (median of empty timings) is printed and subtracted. Events are logged in chunks that fit the queue, with an untimed
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

/* Fits the pipeline's pool of recycled buffers, as a steady producer would. */
#define CHUNK 10000

static evlog_handle *h;
static const char *event_type = "transaction";
static long per_thread;
static pthread_barrier_t start;

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#if defined(__x86_64__)
#include <x86intrin.h>
static inline uint64_t ticks(void) { return __rdtsc(); }
#else
static inline uint64_t ticks(void) { return now_ns(); }
#endif

/* Timestamp-counter ticks per ns. */
static double ticks_per_ns(void) {
    uint64_t t0 = ticks(), n0 = now_ns();
    struct timespec d = {0, 200000000};
    nanosleep(&d, NULL);
    return (double)(ticks() - t0) / (double)(now_ns() - n0);
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
    int n;
    if (strcmp(event_type, "page_view") == 0)
        n = snprintf(event, sizeof event,
                     "{\"user_id\":123456,\"url\":\"/courses/intro-to-rust/lesson/42\","
                     "\"referrer\":\"https://www.example.com/search?q=rust\",\"duration_ms\":5321,"
                     "\"tags\":[\"web\",\"rust\"],\"session\":\"d9b2d63d-a233-4123-847a-5c9a6d1e2a33\"}");
    else
        n = snprintf(event, sizeof event,
                     "{\"user_id\": 1234567, \"amount\": \"19.99\", \"currency\": \"EUR\", "
                     "\"coupon\": \"WINTER\", \"items\": [{\"sku\": \"A-100\", \"price\": \"9.99\", "
                     "\"qty\": 1}, {\"sku\": \"B-1\", \"price\": \"10.00\", \"qty\": 1}]}");
    pthread_barrier_wait(&start);
    for (long done = 0; done < per_thread;) {
        long end = done + CHUNK < per_thread ? done + CHUNK : per_thread;
        for (; done < end; done++) {
            uint64_t t0 = ticks();
            evlog_status st = evlog_log(h, "events", event_type, event, (size_t)n);
            uint64_t t1 = ticks();
            w->samples[done] = (uint32_t)(t1 - t0);
            w->refused += st != EVLOG_OK;
        }
        if (evlog_flush(h, 60000) != EVLOG_OK)
            w->refused++;
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: %s SCHEMAS_DIR THREADS EVENTS_PER_THREAD [page_view|transaction]\n",
                argv[0]);
        return 2;
    }
    if (argc == 5)
        event_type = argv[4];
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
        uint64_t t0 = ticks();
        uint64_t t1 = ticks();
        empty[i] = (uint32_t)(t1 - t0);
    }
    qsort(empty, 10001, sizeof empty[0], cmp_u32);
    uint32_t overhead = empty[5000];

    double tpn = ticks_per_ns();
    /* Warm up: start the flush thread, fill the buffer pool, let the clock calibrate. */
    const char *warm = "{\"user_id\": 1}";
    for (int i = 0; i < 1000; i++)
        evlog_log(h, "events", "transaction", warm, strlen(warm));
    evlog_flush(h, 60000);
    struct timespec pause = {0, 50000000};
    nanosleep(&pause, NULL);

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
    median = median > overhead ? median - overhead : 0;
    p99 = p99 > overhead ? p99 - overhead : 0;
    if (evlog_shutdown(h, 60000) != EVLOG_OK)
        refused++;
    evlog_counters c;
    evlog_stats(h, &c);
    evlog_close(h, 1000);
    printf("event=%s threads=%d events=%zu median_ns=%" PRIu32 " p99_ns=%" PRIu32
           " (timer overhead %" PRIu32 " ns subtracted) delivered=%" PRIu64 " dropped=%" PRIu64
           " rejected=%" PRIu64 "\n",
           event_type, threads, total, (uint32_t)(median / tpn + 0.5), (uint32_t)(p99 / tpn + 0.5),
           (uint32_t)(overhead / tpn + 0.5), c.delivered, c.dropped, c.rejected);
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
