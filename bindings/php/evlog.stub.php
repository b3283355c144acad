<?php
/**
 * IDE stub for the evlog PHP extension (bindings/php). Not loaded by PHP.
 *
 * php.ini directives (all PHP_INI_SYSTEM: php.ini, `php -d`, php-fpm `php_admin_value`; read once
 * per process by the first evlog call; empty = not set, the value comes from evlog.config or the
 * default; EVLOG_* environment variables override both, as in every evlog binding):
 *
 *   evlog.config              TOML config file (same keys as every evlog binding)
 *   evlog.mode                file (default) | "null" (quote it: PHP's ini parser reads bare null
 *                             as an empty string) | collector, bigquery (not available yet:
 *                             Evlog\Exception)
 *   evlog.collector_url       collector URL for mode=collector (not available yet)
 *   evlog.api_key             collector API key for mode=collector (not available yet)
 *   evlog.file_dir            sink.file.dir: <dataset>/<table><YYYYMMDD>.ndjson (default evlog-data)
 *   evlog.file_fsync          sink.file.fsync: fdatasync after every batch (default 0)
 *   evlog.schema_dir          schemas.dir: <namespace>/<type>.json BigQuery schemas (default schemas)
 *   evlog.spool_enabled       spool.enabled (passed to core; the spool is a later issue)
 *   evlog.spool_dir           spool.dir
 *   evlog.spool_max_bytes     spool.max_bytes
 *   evlog.batch_max_rows      batch.max_rows (default 500)
 *   evlog.batch_max_bytes     batch.max_bytes (default 1MiB)
 *   evlog.batch_max_age       batch.max_age (default 1s)
 *   evlog.shutdown_timeout    batch.shutdown_timeout: MSHUTDOWN's delivery deadline (default 5s)
 *   evlog.queue_capacity      queue.capacity (default 100000)
 *   evlog.queue_max_bytes     queue.max_bytes (default 64MiB)
 *   evlog.max_event_bytes     queue.max_event_bytes (default 1MiB)
 *   evlog.retry_base          retry.base (default 100ms)
 *   evlog.retry_cap           retry.cap (default 30s)
 *   evlog.retry_max_attempts  retry.max_attempts (default 8)
 */

namespace Evlog {
    /**
     * Misuse of the API: invalid configuration (names the directive or key and the rule), wrong
     * option types, or an event value that has no JSON form (names the field, e.g.
     * `event.items[2].price`). Never thrown for transport problems.
     */
    class Exception extends \Exception {}
}

namespace {
    /**
     * Logs one event: converts $event to JSON in the extension, checks the envelope, stamps time
     * and id, and pushes onto an in-memory queue. Never blocks, never does I/O; a background
     * thread (started by the first call in each process) validates and delivers.
     *
     * Conversions: assoc arrays → objects (integer keys as strings), lists (keys 0..n-1 in
     * order) → arrays, int, float (NaN/INF → "NaN"/"Infinity"/"-Infinity"), bool, null, string
     * (must be UTF-8), DateTimeInterface → RFC 3339 UTC with microseconds, JsonSerializable →
     * its jsonSerialize(), Stringable → string, stdClass → object. The top-level event is always
     * an object. At most 64 levels of nesting.
     *
     * @param string $namespace BigQuery dataset name ([A-Za-z0-9_])
     * @param string $type      table name
     * @param array  $event     the event's fields
     * @param array{time?: \DateTimeInterface|int|float|null, id?: string|null}|null $options
     *        time: event time (DateTimeInterface, or epoch milliseconds); default now.
     *        id: the event id (BigQuery insertId); default a UUIDv7.
     * @return bool false when the event was not taken (invalid envelope, queue full, shut
     *         down): counted in evlog_stats() as dropped with the reason; evlog_last_error() says why.
     * @throws \Evlog\Exception on misuse (see the class).
     */
    function evlog_log(string $namespace, string $type, array $event, ?array $options = null): bool {}

    /**
     * Waits until every event logged before this call in this process has been answered by the
     * sink.
     *
     * @return bool true when every such event was delivered or rejected to the dead-letter table
     *         within $timeout_ms; false on timeout or when some were spooled or dropped (counted,
     *         see evlog_stats()).
     * @throws \Evlog\Exception for a negative timeout or invalid configuration.
     */
    function evlog_flush(int $timeout_ms = 1000): bool {}

    /**
     * This process's counters, keyed by their DESIGN.md names with labels, e.g.
     * `evlog_events_accepted_total`, `evlog_events_delivered_total`,
     * `evlog_events_dropped_total{reason="queue_full"}`, `evlog_events_rejected_total{reason="unknown_table"}`,
     * `evlog_queue_events`; plus `in_flight` (accepted - delivered - rejected - dropped) and `pid`.
     *
     * @return array<string, int>
     * @throws \Evlog\Exception for invalid configuration.
     */
    function evlog_stats(): array {}

    /** Why the last evlog_log() in this process returned false; null after a success. */
    function evlog_last_error(): ?string {}
}
