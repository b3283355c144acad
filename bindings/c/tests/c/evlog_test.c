/*
 * C tests of libevlog, built by tests/suites/10-c.sh with gcc against the static library and run
 * plain, under AddressSanitizer and under valgrind.
 *
 * Usage: evlog_test SCHEMAS_DIR WORK_DIR [TEST...]
 *   SCHEMAS_DIR  schemas with events/transaction.json (core/tests/data/schemas)
 *   WORK_DIR     an empty temporary directory; each test writes its files under WORK_DIR/<test>
 *   TEST         run only these tests (default: all)
 * Environment: EVTEST_EVENTS (default 100000) events for the threads and fork tests;
 *              EVTEST_STATS_TEXT, a file the log_misuse test writes evlog_stats_text's text to.
 * Prints "ok - NAME" / "not ok - NAME" per test and "# passed N failed M"; exits 1 on failure.
 */
#define _GNU_SOURCE
#include <evlog.h>

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *schemas_dir;
static const char *work_dir;
static long n_events = 100000;

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                            \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        return 1;                                                                                  \
    } while (0)
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            FAIL("check failed: %s", #cond);                                                       \
    } while (0)
#define CHECK_STATUS(call, want)                                                                   \
    do {                                                                                           \
        evlog_status got_ = (call);                                                                \
        if (got_ != (want))                                                                        \
            FAIL("%s returned %u (%s), want %s", #call, (unsigned)got_, evlog_strerror(got_),     \
                 #want);                                                                           \
    } while (0)
#define CHECK_U64(a, b)                                                                            \
    do {                                                                                           \
        uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);                                           \
        if (a_ != b_)                                                                              \
            FAIL("%s = %" PRIu64 ", want %s = %" PRIu64, #a, a_, #b, b_);                          \
    } while (0)

/* This thread's last error message (a static buffer: tests are single-threaded here). */
static const char *last_error(void) {
    static char buf[1024];
    buf[0] = 0;
    evlog_last_error(buf, sizeof buf, NULL);
    return buf;
}

#define CHECK_LAST_ERROR_HAS(needle)                                                               \
    do {                                                                                           \
        const char *m_ = last_error();                                                             \
        if (!strstr(m_, (needle)))                                                                 \
            FAIL("last error \"%s\" does not contain \"%s\"", m_, (needle));                       \
    } while (0)

/* Makes WORK_DIR/name and returns its path (static storage per call site is not needed: copy). */
static void test_dir(const char *name, char *out, size_t len) {
    snprintf(out, len, "%s/%s", work_dir, name);
    mkdir(out, 0700);
}

/* TOML config: file sink into `dir`, the test schemas, a queue that holds every test event. */
static void config_for(const char *dir, char *out, size_t len) {
    snprintf(out, len,
             "[sink]\nkind = \"file\"\n[sink.file]\ndir = \"%s/data\"\n"
             "[schemas]\ndir = \"%s\"\n"
             "[queue]\ncapacity = %ld\n"
             "[batch]\nmax_age = \"50ms\"\nmax_rows = 2000\n",
             dir, schemas_dir, 2 * n_events + 100);
}

static int open_in(const char *name, evlog_handle **h, char *dir, size_t dirlen) {
    char config[2048], err[512];
    test_dir(name, dir, dirlen);
    config_for(dir, config, sizeof config);
    evlog_status st = evlog_open(config, h, err, sizeof err);
    if (st != EVLOG_OK)
        FAIL("evlog_open: %s: %s", evlog_strerror(st), err);
    return 0;
}

/* Reads every line of DIR/data/events/<prefix>*.ndjson; calls `each` with each line. Returns the
 * number of lines, or -1 when the directory cannot be read. */
static long read_rows(const char *dir, const char *prefix, void (*each)(const char *, void *),
                      void *ctx) {
    char path[4096];
    snprintf(path, sizeof path, "%s/data/events", dir);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    long lines = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0 || n < 7 ||
            strcmp(e->d_name + n - 7, ".ndjson") != 0)
            continue;
        char file[4608];
        snprintf(file, sizeof file, "%s/%s", path, e->d_name);
        FILE *f = fopen(file, "r");
        if (!f)
            continue;
        char *line = NULL;
        size_t cap = 0;
        while (getline(&line, &cap, f) > 0) {
            lines++;
            if (each)
                each(line, ctx);
        }
        free(line);
        fclose(f);
    }
    closedir(d);
    return lines;
}

/* Prints a row to stderr (to show what a failed check saw). */
static void fputs_row(const char *line, void *ctx) {
    (void)ctx;
    fputs(line, stderr);
}

/* ---- ids "<tag><thread>-<i>": one slot per expected id, counting how often it was seen ---- */
struct idset {
    int threads;
    long per_thread;
    unsigned char *seen; /* threads * per_thread counters */
    long bad;            /* rows without an id of the expected form */
};

static void idset_mark(const char *line, void *ctx) {
    struct idset *s = ctx;
    const char *p = strstr(line, "\"event_id\":\"");
    int t;
    long i;
    if (!p || sscanf(p + 12, "%*[a-z]%d-%ld", &t, &i) != 2 || t < 0 || t >= s->threads || i < 0 ||
        i >= s->per_thread) {
        s->bad++;
        return;
    }
    unsigned char *c = &s->seen[(long)t * s->per_thread + i];
    if (*c < 255)
        (*c)++;
}

/* Each expected id seen exactly once. */
static int idset_check(const struct idset *s) {
    for (long k = 0; k < s->threads * s->per_thread; k++)
        if (s->seen[k] != 1)
            FAIL("id %ld-%ld seen %d times", k / s->per_thread, k % s->per_thread, s->seen[k]);
    CHECK(s->bad == 0);
    return 0;
}

static int counters_settled(const evlog_counters *c) {
    return c->in_flight == 0 &&
           c->accepted == c->delivered + c->rejected + c->dropped;
}

/* Waits until every event logged through h so far is answered by the sink. A slow machine
 * (valgrind, a busy CI host) only makes it take longer: it fails when no event was answered for
 * 60 s, not after a fixed time. */
static int settle(evlog_handle *h) {
    uint64_t last = 0;
    time_t quiet_since = time(NULL);
    for (;;) {
        evlog_status s = evlog_flush(h, 1000);
        if (s == EVLOG_OK)
            return 0;
        if (s != EVLOG_TIMEOUT)
            FAIL("evlog_flush returned %u (%s)", (unsigned)s, evlog_strerror(s));
        evlog_counters c;
        CHECK_STATUS(evlog_stats(h, &c), EVLOG_OK);
        uint64_t answered = c.delivered + c.rejected + c.dropped;
        if (answered != last) {
            last = answered;
            quiet_since = time(NULL);
        } else if (time(NULL) - quiet_since >= 60) {
            FAIL("no event answered for 60 s (%" PRIu64 " of %" PRIu64 " answered)", answered,
                 c.accepted);
        }
    }
}

/* A ~200-byte transaction event. */
static int event_text(char *buf, size_t len, long i) {
    return snprintf(buf, len,
                    "{\"user_id\": %ld, \"amount\": \"19.99\", \"currency\": \"EUR\", "
                    "\"coupon\": \"WINTER\", \"items\": [{\"sku\": \"A-%ld\", \"price\": \"9.99\", "
                    "\"qty\": 1}, {\"sku\": \"B-1\", \"price\": \"10.00\", \"qty\": 1}]}",
                    i, i % 1000);
}

/* ------------------------------------------------------------------------------------------ */

static int test_version_and_strerror(void) {
    CHECK(strcmp(evlog_version(), EVLOG_VERSION) == 0);
    char v[64];
    snprintf(v, sizeof v, "%d.%d.%d", EVLOG_VERSION_MAJOR, EVLOG_VERSION_MINOR,
             EVLOG_VERSION_PATCH);
    CHECK(strcmp(v, EVLOG_VERSION) == 0);
    CHECK(strcmp(evlog_strerror(EVLOG_OK), "ok") == 0);
    for (uint32_t s = 1; s <= EVLOG_BUFFER_TOO_SMALL; s++) {
        CHECK(evlog_strerror(s) != NULL);
        CHECK(strcmp(evlog_strerror(s), "unknown evlog status") != 0);
    }
    CHECK(strcmp(evlog_strerror(12), "unknown evlog status") == 0);
    CHECK(strcmp(evlog_strerror(UINT32_MAX), "unknown evlog status") == 0);
    return 0;
}

static int test_open_errors(void) {
    char dir[1024], config[4096], err[512];
    test_dir("open_errors", dir, sizeof dir);
    evlog_handle *const sentinel = (evlog_handle *)&dir;
    evlog_handle *h = sentinel;

    CHECK_STATUS(evlog_open("", NULL, err, sizeof err), EVLOG_NULL_ARGUMENT);
    CHECK(strstr(err, "`out`") != NULL);

    /* An unknown key is named; *out is untouched. */
    CHECK_STATUS(evlog_open("[sink]\nkind = \"file\"\nbogus_key = 1\n", &h, err, sizeof err),
                 EVLOG_CONFIG_ERROR);
    CHECK(h == sentinel);
    CHECK(strstr(err, "bogus_key") != NULL);
    CHECK_LAST_ERROR_HAS("bogus_key");

    /* A value that breaks a rule names the key. */
    snprintf(config, sizeof config, "[batch]\nmax_rows = 0\n[schemas]\ndir = \"%s\"\n",
             schemas_dir);
    CHECK_STATUS(evlog_open(config, &h, err, sizeof err), EVLOG_CONFIG_ERROR);
    CHECK(strstr(err, "batch.max_rows") != NULL);

    /* Not TOML text: a path, which does not exist; the message names it. */
    CHECK_STATUS(evlog_open("/nonexistent/evlog.toml", &h, err, sizeof err), EVLOG_CONFIG_ERROR);
    CHECK(strstr(err, "/nonexistent/evlog.toml") != NULL);

    /* Bad UTF-8 in the config text. */
    CHECK_STATUS(evlog_open("[sink]\nkind = \"\xff\"\n", &h, err, sizeof err),
                 EVLOG_INVALID_UTF8);
    CHECK(strstr(err, "config") != NULL);

    /* A malformed schema file stops startup and names the file. */
    char sdir[4200], file[4300];
    snprintf(sdir, sizeof sdir, "%s/schemas", dir);
    mkdir(sdir, 0700);
    snprintf(sdir, sizeof sdir, "%s/schemas/events", dir);
    mkdir(sdir, 0700);
    snprintf(file, sizeof file, "%s/broken.json", sdir);
    FILE *f = fopen(file, "w");
    CHECK(f != NULL);
    fputs("[{\"name\": \"x\", \"type\": \"NOPE\"}]", f);
    fclose(f);
    snprintf(config, sizeof config, "[schemas]\ndir = \"%s/schemas\"\n", dir);
    CHECK_STATUS(evlog_open(config, &h, err, sizeof err), EVLOG_SCHEMA_ERROR);
    CHECK(strstr(err, "broken.json") != NULL);
    CHECK(h == sentinel);

    /* EVLOG_* environment overrides apply to config text too: an unknown one is named. */
    setenv("EVLOG_NOT_A_KEY", "1", 1);
    CHECK_STATUS(evlog_open("", &h, err, sizeof err), EVLOG_CONFIG_ERROR);
    unsetenv("EVLOG_NOT_A_KEY");
    CHECK(strstr(err, "EVLOG_NOT_A_KEY") != NULL);

    /* A small error buffer gets a cut, NUL-terminated message; NULL errbuf is allowed. */
    char tiny[8];
    memset(tiny, 'x', sizeof tiny);
    CHECK_STATUS(evlog_open("bogus = 1", &h, tiny, sizeof tiny), EVLOG_CONFIG_ERROR);
    CHECK(strlen(tiny) == 7);
    CHECK_STATUS(evlog_open("bogus = 1", &h, NULL, 0), EVLOG_CONFIG_ERROR);

    /* evlog_last_error: buffer rules. */
    size_t n = 99;
    CHECK_STATUS(evlog_last_error(NULL, 10, &n), EVLOG_NULL_ARGUMENT);
    CHECK_STATUS(evlog_last_error(tiny, 0, &n), EVLOG_NULL_ARGUMENT);
    CHECK(n == 99);
    CHECK_STATUS(evlog_last_error(tiny, sizeof tiny, &n), EVLOG_BUFFER_TOO_SMALL);
    CHECK(n == 7 && strlen(tiny) == 7);
    CHECK(h == sentinel);
    return 0;
}

static int test_log_misuse(void) {
    char dir[4096];
    evlog_handle *h;
    if (open_in("log_misuse", &h, dir, sizeof dir))
        return 1;
    const char *ok = "{\"user_id\": 1}";
    size_t okn = strlen(ok);
    uint64_t invalid = 0, accepted = 0;

    /* NULLs: nothing reaches core, nothing is counted. */
    CHECK_STATUS(evlog_log(NULL, "events", "transaction", ok, okn), EVLOG_NULL_ARGUMENT);
    CHECK_LAST_ERROR_HAS("`handle`");
    CHECK_STATUS(evlog_log(h, NULL, "transaction", ok, okn), EVLOG_NULL_ARGUMENT);
    CHECK_LAST_ERROR_HAS("`namespace`");
    CHECK_STATUS(evlog_log(h, "events", NULL, ok, okn), EVLOG_NULL_ARGUMENT);
    CHECK_LAST_ERROR_HAS("`type_name`");
    CHECK_STATUS(evlog_log(h, "events", "transaction", NULL, 0), EVLOG_NULL_ARGUMENT);
    CHECK_LAST_ERROR_HAS("`event_json`");
    CHECK_STATUS(evlog_log_with(h, "events", "transaction", NULL, 3, EVLOG_TIME_NOW, NULL),
                 EVLOG_NULL_ARGUMENT);

    /* Bad UTF-8 in each string argument. */
    CHECK_STATUS(evlog_log(h, "ev\xc3", "transaction", ok, okn), EVLOG_INVALID_UTF8);
    CHECK_LAST_ERROR_HAS("`namespace` is not valid UTF-8");
    CHECK_STATUS(evlog_log(h, "events", "transaction", "{\"a\": \"\xff\xfe\"}", 13),
                 EVLOG_INVALID_UTF8);
    CHECK_LAST_ERROR_HAS("`event_json`");
    CHECK_STATUS(evlog_log_with(h, "events", "transaction", ok, okn, EVLOG_TIME_NOW, "id\xff"),
                 EVLOG_INVALID_UTF8);
    CHECK_LAST_ERROR_HAS("`id`");

    /* Envelope rules: counted as dropped (invalid_envelope), the message names the field. */
    CHECK_STATUS(evlog_log(h, "events", "transaction", "[1, 2]", 6), EVLOG_INVALID_EVENT);
    CHECK_LAST_ERROR_HAS("\"event\"");
    invalid++;
    CHECK_STATUS(evlog_log(h, "events", "transaction", "42", 2), EVLOG_INVALID_EVENT);
    invalid++;
    CHECK_STATUS(evlog_log(h, "events", "transaction", "", 0), EVLOG_INVALID_EVENT);
    invalid++;
    CHECK_STATUS(evlog_log(h, "bad ns", "transaction", ok, okn), EVLOG_INVALID_EVENT);
    CHECK_LAST_ERROR_HAS("namespace");
    invalid++;
    CHECK_STATUS(evlog_log(h, "events", "../etc", ok, okn), EVLOG_INVALID_EVENT);
    CHECK_LAST_ERROR_HAS("type");
    invalid++;
    CHECK_STATUS(evlog_log_with(h, "events", "transaction", ok, okn, EVLOG_TIME_NOW, "a\nb"),
                 EVLOG_INVALID_EVENT);
    CHECK_LAST_ERROR_HAS("id");
    invalid++;
    CHECK_STATUS(evlog_log_with(h, "events", "transaction", ok, okn, INT64_MAX, NULL),
                 EVLOG_INVALID_EVENT);
    CHECK_LAST_ERROR_HAS("time");
    invalid++;

    /* The body is only length-delimited: text after `len` is not read. */
    CHECK_STATUS(evlog_log(h, "events", "transaction", "{\"user_id\": 7}TRAILING", 14), EVLOG_OK);
    accepted++;
    /* Looks like an object but is not JSON: accepted, then rejected (dead-lettered). */
    CHECK_STATUS(evlog_log(h, "events", "transaction", "{not json}", 10), EVLOG_OK);
    accepted++;
    /* Valid JSON that breaks the schema (user_id is REQUIRED): rejected. */
    CHECK_STATUS(evlog_log(h, "events", "transaction", "{\"amount\": \"1\"}", 15), EVLOG_OK);
    accepted++;
    CHECK_STATUS(evlog_flush(NULL, 1000), EVLOG_NULL_ARGUMENT);
    CHECK_STATUS(evlog_flush(h, 10000), EVLOG_OK);

    evlog_counters c;
    memset(&c, 0xab, sizeof c);
    evlog_counters before = c;
    CHECK_STATUS(evlog_stats(h, NULL), EVLOG_NULL_ARGUMENT);
    CHECK_STATUS(evlog_stats(NULL, &c), EVLOG_NULL_ARGUMENT);
    CHECK(memcmp(&c, &before, sizeof c) == 0); /* outputs only on success */
    CHECK_STATUS(evlog_stats(h, &c), EVLOG_OK);
    CHECK_U64(c.accepted, invalid + accepted);
    CHECK_U64(c.dropped_invalid_envelope, invalid);
    CHECK_U64(c.dropped, invalid);
    CHECK_U64(c.delivered, 1);
    CHECK_U64(c.rejected, 2);
    CHECK(counters_settled(&c));

    /* The rows: one delivered, two dead letters. */
    CHECK(read_rows(dir, "transaction", NULL, NULL) == 1);
    CHECK(read_rows(dir, "_evlog_rejected", NULL, NULL) == 2);

    /* Prometheus text: too small, then enough. */
    char small[16];
    size_t need = 0;
    memset(small, 'z', sizeof small);
    CHECK_STATUS(evlog_stats_text(h, small, sizeof small, &need), EVLOG_BUFFER_TOO_SMALL);
    CHECK(small[0] == 'z');
    CHECK(need > sizeof small);
    char *text = malloc(need);
    size_t got = 0;
    CHECK_STATUS(evlog_stats_text(h, text, need, &got), EVLOG_OK);
    CHECK(got == need - 1 && strlen(text) == got);
    /* Each family's samples right under its HELP and TYPE lines. Every known reason has a
     * sample (0 until counted), so the counted one sits among them: between its family's TYPE
     * line and the next family's HELP line. */
    const char *dropped = strstr(text, "# TYPE evlog_events_dropped_total counter\n");
    const char *next = dropped ? strstr(dropped, "# HELP ") : NULL;
    const char *sample = strstr(text, "\nevlog_events_dropped_total{reason=\"invalid_envelope\"} 7\n");
    int has = dropped && next && sample && dropped < sample && sample < next &&
              strstr(text, "# TYPE evlog_events_rejected_total counter\n"
                           "evlog_events_rejected_total{reason=") != NULL &&
              strstr(text, "\nevlog_events_dropped_total{reason=\"spool_full\"} 0\n") != NULL;
    /* For the suite's promtool and prometheus_client checks. */
    const char *out_path = getenv("EVTEST_STATS_TEXT");
    FILE *out = out_path ? fopen(out_path, "w") : NULL;
    int written = out && fputs(text, out) >= 0;
    if (out)
        written &= fclose(out) == 0;
    free(text);
    CHECK(has);
    CHECK(!out_path || written);

    CHECK_STATUS(evlog_close(h, 10000), EVLOG_OK);
    return 0;
}

/* "Closed handle": a handle after evlog_shutdown refuses events and keeps its counters; after
 * evlog_close the pointer is freed (using it is undefined, like free()), so that part is only
 * evlog_close(NULL). */
static int test_shutdown_handle(void) {
    char dir[4096];
    evlog_handle *h;
    if (open_in("shutdown_handle", &h, dir, sizeof dir))
        return 1;
    const char *ok = "{\"user_id\": 1}";
    CHECK_STATUS(evlog_log(h, "events", "transaction", ok, strlen(ok)), EVLOG_OK);
    CHECK_STATUS(evlog_shutdown(NULL, 1000), EVLOG_NULL_ARGUMENT);
    CHECK_STATUS(evlog_shutdown(h, 10000), EVLOG_OK);
    CHECK_STATUS(evlog_shutdown(h, 10000), EVLOG_OK); /* again: harmless */
    CHECK_STATUS(evlog_log(h, "events", "transaction", ok, strlen(ok)), EVLOG_SHUT_DOWN);
    CHECK_LAST_ERROR_HAS("shut down");
    CHECK_STATUS(evlog_log_with(h, "events", "transaction", ok, strlen(ok), EVLOG_TIME_NOW, "x"),
                 EVLOG_SHUT_DOWN);
    evlog_counters c;
    CHECK_STATUS(evlog_stats(h, &c), EVLOG_OK);
    CHECK_U64(c.accepted, 3);
    CHECK_U64(c.delivered, 1);
    CHECK_U64(c.dropped_shut_down, 2);
    CHECK(counters_settled(&c));
    CHECK(read_rows(dir, "transaction", NULL, NULL) == 1);
    CHECK_STATUS(evlog_close(h, 10000), EVLOG_OK);
    CHECK_STATUS(evlog_close(NULL, 10000), EVLOG_NULL_ARGUMENT);

    /* A handle that never logged closes at once (no thread was started). */
    if (open_in("shutdown_unused", &h, dir, sizeof dir))
        return 1;
    CHECK_STATUS(evlog_close(h, 0), EVLOG_OK);
    return 0;
}

/* Fields the schema does not name land in `other` as sent: numbers digit for digit (integers
 * beyond 64 bits, beyond doubles), string escapes as written; only whitespace is dropped. */
struct find_ctx {
    const char *needle;
    int found;
};

static void find_in_row(const char *line, void *ctx) {
    struct find_ctx *f = ctx;
    if (strstr(line, f->needle))
        f->found++;
}

static int test_other_exact(void) {
    char dir[4096];
    evlog_handle *h;
    if (open_in("other_exact", &h, dir, sizeof dir))
        return 1;
    const char *ev = "{\"user_id\": 1, \"big\": 123456789012345678901234567890,\n"
                     "  \"neg\": -9223372036854775809, \"u\": 18446744073709551616,\n"
                     "  \"nested\": {\"x\": [1e400, 0.1000000000000000000001, -0.0]},"
                     " \"s\": \"caf\\u00e9 \\/\"}";
    CHECK_STATUS(evlog_log_with(h, "events", "transaction", ev, strlen(ev), EVLOG_TIME_NOW, "x1"),
                 EVLOG_OK);
    CHECK_STATUS(evlog_flush(h, 10000), EVLOG_OK);
    /* The row's `other` is a JSON string: its quotes and backslashes are escaped once more. */
    struct find_ctx f = {
        "\"other\":\"{\\\"big\\\":123456789012345678901234567890,"
        "\\\"neg\\\":-9223372036854775809,\\\"u\\\":18446744073709551616,"
        "\\\"nested\\\":{\\\"x\\\":[1e400,0.1000000000000000000001,-0.0]},"
        "\\\"s\\\":\\\"caf\\\\u00e9 \\\\/\\\"}\"",
        0};
    CHECK(read_rows(dir, "transaction", find_in_row, &f) == 1);
    if (f.found != 1) {
        read_rows(dir, "transaction", fputs_row, NULL);
        FAIL("`other` not as sent; want %s", f.needle);
    }
    CHECK_STATUS(evlog_close(h, 10000), EVLOG_OK);
    return 0;
}

/* ---- many threads ---- */
struct worker {
    evlog_handle *h;
    int index;
    long count;
    long failed;
};

static void *worker_main(void *arg) {
    struct worker *w = arg;
    char event[512], id[64];
    for (long i = 0; i < w->count; i++) {
        int n = event_text(event, sizeof event, i);
        snprintf(id, sizeof id, "t%d-%ld", w->index, i);
        if (evlog_log_with(w->h, "events", "transaction", event, (size_t)n, EVLOG_TIME_NOW, id) !=
            EVLOG_OK)
            w->failed++;
    }
    return NULL;
}

static int test_threads(void) {
    enum { THREADS = 8 };
    char dir[4096];
    evlog_handle *h;
    if (open_in("threads", &h, dir, sizeof dir))
        return 1;
    long per = n_events / THREADS;
    struct worker w[THREADS];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){h, i, per, 0};
        CHECK(pthread_create(&t[i], NULL, worker_main, &w[i]) == 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        CHECK(w[i].failed == 0);
    }
    if (settle(h))
        return 1;
    CHECK_STATUS(evlog_shutdown(h, 60000), EVLOG_OK);
    evlog_counters c;
    CHECK_STATUS(evlog_stats(h, &c), EVLOG_OK);
    CHECK_U64(c.accepted, (uint64_t)per * THREADS);
    CHECK_U64(c.delivered, (uint64_t)per * THREADS);
    CHECK_U64(c.rejected, 0);
    CHECK_U64(c.dropped, 0);
    CHECK(counters_settled(&c));
    CHECK_STATUS(evlog_close(h, 1000), EVLOG_OK);

    struct idset ids = {THREADS, per, calloc((size_t)(THREADS * per), 1), 0};
    long rows = read_rows(dir, "transaction", idset_mark, &ids);
    int bad = rows != per * THREADS || idset_check(&ids);
    free(ids.seen);
    if (bad)
        FAIL("%ld rows, want %ld", rows, per * THREADS);
    return 0;
}

/* ---- fork: parent and child both log through the handle opened before the fork ---- */
static int log_tagged(evlog_handle *h, const char *tag, long count) {
    char event[512], id[64];
    for (long i = 0; i < count; i++) {
        int n = event_text(event, sizeof event, i);
        snprintf(id, sizeof id, "%s-%ld", tag, i);
        CHECK_STATUS(evlog_log_with(h, "events", "transaction", event, (size_t)n, EVLOG_TIME_NOW,
                                    id),
                     EVLOG_OK);
    }
    return 0;
}

static int child_part(evlog_handle *h, long count) {
    evlog_counters c;
    CHECK_STATUS(evlog_stats(h, &c), EVLOG_OK);
    CHECK_U64(c.accepted, 0); /* the parent's counters stay with the parent */
    if (log_tagged(h, "c1", count))
        return 1;
    if (settle(h))
        return 1;
    CHECK_STATUS(evlog_shutdown(h, 60000), EVLOG_OK);
    CHECK_STATUS(evlog_stats(h, &c), EVLOG_OK);
    CHECK_U64(c.accepted, count);
    CHECK_U64(c.delivered, count);
    CHECK(counters_settled(&c));
    CHECK_STATUS(evlog_close(h, 1000), EVLOG_OK);
    return 0;
}

static int test_fork(void) {
    char dir[4096];
    evlog_handle *h;
    if (open_in("fork", &h, dir, sizeof dir))
        return 1;
    long count = n_events / 10;
    /* The parent's flush thread is running (and has queued events) when it forks. */
    if (log_tagged(h, "p0", count))
        return 1;
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0)
        _exit(child_part(h, count) ? 1 : 0);
    int parent_failed = log_tagged(h, "p2", count);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(!parent_failed);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        FAIL("child failed (status %d)", status);
    if (settle(h))
        return 1;
    CHECK_STATUS(evlog_shutdown(h, 60000), EVLOG_OK);
    evlog_counters c;
    CHECK_STATUS(evlog_stats(h, &c), EVLOG_OK);
    CHECK_U64(c.accepted, 2 * count);
    CHECK_U64(c.delivered, 2 * count);
    CHECK(counters_settled(&c));
    CHECK_STATUS(evlog_close(h, 1000), EVLOG_OK);

    /* ids: p0-*, c1-*, p2-* each exactly once (the parent's queue was not delivered twice). */
    struct idset ids = {3, count, calloc((size_t)(3 * count), 1), 0};
    long rows = read_rows(dir, "transaction", idset_mark, &ids);
    int bad = rows != 3 * count || idset_check(&ids);
    free(ids.seen);
    if (bad)
        FAIL("%ld rows, want %ld", rows, 3 * count);
    return 0;
}

static const struct {
    const char *name;
    int (*fn)(void);
} tests[] = {
    {"version_and_strerror", test_version_and_strerror},
    {"open_errors", test_open_errors},
    {"log_misuse", test_log_misuse},
    {"shutdown_handle", test_shutdown_handle},
    {"threads", test_threads},
    {"fork", test_fork},
    {"other_exact", test_other_exact},
};

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s SCHEMAS_DIR WORK_DIR [TEST...]\n", argv[0]);
        return 2;
    }
    schemas_dir = argv[1];
    work_dir = argv[2];
    const char *env = getenv("EVTEST_EVENTS");
    if (env && atol(env) > 0)
        n_events = atol(env);
    int passed = 0, failed = 0;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        int selected = argc == 3;
        for (int a = 3; a < argc; a++)
            selected |= strcmp(argv[a], tests[i].name) == 0;
        if (!selected)
            continue;
        int bad = tests[i].fn();
        printf("%s - %s\n", bad ? "not ok" : "ok", tests[i].name);
        fflush(stdout);
        bad ? failed++ : passed++;
    }
    printf("# passed %d failed %d\n", passed, failed);
    return failed ? 1 : 0;
}
