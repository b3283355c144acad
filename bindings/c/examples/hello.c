/*
 * evlog from C: open a pipeline, log events from the request path, flush, read the counters.
 *
 * Build and run (from the repository root; see bindings/c/README.md):
 *   cargo build --release -p evlog-c && cc -O2 -Iinclude bindings/c/examples/hello.c \
 *     target/release/libevlog.a -lpthread -ldl -lm -o hello && ./hello
 *
 * Usage: hello [CONFIG]   CONFIG is TOML text or a path; default: the example collector config
 * (collector/examples/evlog.toml, schemas in collector/examples/schemas), as the quick start.
 */
#include <evlog.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    const char *config = argc > 1 ? argv[1] : "collector/examples/evlog.toml";
    char err[512];
    evlog_handle *log = NULL;
    evlog_status st = evlog_open(config, &log, err, sizeof err);
    if (st != EVLOG_OK) {
        fprintf(stderr, "evlog_open: %s: %s\n", evlog_strerror(st), err);
        return 1;
    }

    /* The request path: build the event's JSON text and hand it over. Never blocks. */
    for (int i = 0; i < 3; i++) {
        char event[256];
        int n = snprintf(event, sizeof event,
                         "{\"user_id\": %d, \"amount\": \"9.99\", \"currency\": \"EUR\"}", 40 + i);
        st = evlog_log(log, "events", "transaction", event, (size_t)n);
        if (st != EVLOG_OK) {
            evlog_last_error(err, sizeof err, NULL);
            fprintf(stderr, "evlog_log: %s: %s\n", evlog_strerror(st), err);
        }
    }
    /* An event with our own id (BigQuery's insertId) and time (µs since the epoch). */
    const char *page = "{\"url\": \"/checkout\"}";
    evlog_log_with(log, "events", "page_view", page, strlen(page), 1795867200000000, "pv-0001");
    /* A refused event: the body must be a JSON object. The message names the field. */
    if (evlog_log(log, "events", "transaction", "[1, 2]", 6) == EVLOG_INVALID_EVENT) {
        evlog_last_error(err, sizeof err, NULL);
        printf("refused as expected: %s\n", err);
    }

    if (evlog_flush(log, 5000) != EVLOG_OK)
        fprintf(stderr, "flush timed out\n");
    evlog_counters s;
    if (evlog_stats(log, &s) == EVLOG_OK)
        printf("accepted %" PRIu64 ", delivered %" PRIu64 ", rejected %" PRIu64
               ", dropped %" PRIu64 "\n",
               s.accepted, s.delivered, s.rejected, s.dropped);
    return evlog_close(log, 5000) == EVLOG_OK ? 0 : 1;
}
