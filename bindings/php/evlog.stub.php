<?php
/**
 * IDE stub for the evlog PHP extension (bindings/php). Not loaded by PHP.
 *
 * php.ini directives (all PHP_INI_SYSTEM: php.ini, `php -d`, php-fpm `php_admin_value`; read once
 * per process by the first evlog call). A directive set nowhere keeps the value from the TOML file
 * (evlog.config, else $EVLOG_CONFIG) or core's default; EVLOG_* environment variables override
 * everything, as in every evlog binding. `php --ri evlog` shows each directive's effective value
 * and where it comes from (secrets redacted).
 *
 * Empty values: PHP's ini parser turns the bare words null, off, no, false and none into "". A
 * boolean directive reads "" as off; any other directive set to "" is an Evlog\Exception saying
 * to quote the word: write evlog.mode="null" and evlog.bigquery_auth="none".
 *
 *   evlog.config                        TOML file with any keys of the top-level README
 *   evlog.mode                          sink.kind: file (default) | "null" | forward | bigquery |
 *                                       opensearch (collector is refused: that sink is called forward)
 *   -- mode = file
 *   evlog.file_dir                      sink.file.dir: <dataset>/<table><YYYYMMDD>.ndjson (evlog-data)
 *   evlog.file_fsync                    sink.file.fsync: fdatasync after every batch (0)
 *   evlog.file_max_open_files           sink.file.max_open_files (64)
 *   evlog.file_dead_letter_table        sink.file.dead_letter_table (_evlog_rejected)
 *   -- mode = forward (to an evlog collector)
 *   evlog.forward_url                   sink.forward.url: collector base URL, required
 *   evlog.forward_urls                  sink.forward.urls: several collectors, comma-separated
 *                                       (instead of forward_url; failed ones skipped for a backoff)
 *   evlog.forward_api_key               sink.forward.api_key: sent as Authorization: Bearer (none)
 *   evlog.forward_compression           sink.forward.compression: auto, zstd, gzip or none (auto:
 *                                       zstd unless every collector is on loopback; gzip from
 *                                       then on if a collector answers 415 to zstd)
 *   evlog.forward_gzip                  sink.forward.gzip: older spelling of forward_compression:
 *                                       on (gzip), off (none) or auto
 *   evlog.forward_timeout               sink.forward.timeout: one HTTP request (10s)
 *   evlog.forward_workers               sink.forward.workers: requests in flight (4)
 *   evlog.forward_max_rows_per_request  sink.forward.max_rows_per_request (1000)
 *   evlog.forward_format                sink.forward.format: events (the collector validates) or rows (events)
 *   evlog.forward_report_interval       sink.forward.report_interval: how often a worker reports its counters to the collector (0s: never)
 *   evlog.forward_app                   sink.forward.app: the app label of those reports (default: the program's name)
 *   -- mode = bigquery
 *   evlog.bigquery_project              sink.bigquery.project: required
 *   evlog.bigquery_auth                 sink.bigquery.auth: application_default (default) |
 *                                       service_account | token | "none"
 *   evlog.bigquery_credentials          sink.bigquery.credentials: service-account key file
 *   evlog.bigquery_token                sink.bigquery.token: bearer token for auth = token
 *   evlog.bigquery_base_url             sink.bigquery.base_url (https://bigquery.googleapis.com/bigquery/v2)
 *   evlog.bigquery_max_rows_per_request sink.bigquery.max_rows_per_request (500)
 *   evlog.bigquery_max_bytes_per_request sink.bigquery.max_bytes_per_request (9MB)
 *   evlog.bigquery_gzip                 sink.bigquery.gzip (1)
 *   evlog.bigquery_workers              sink.bigquery.workers: insertAll requests in flight (4)
 *   evlog.bigquery_request_timeout      sink.bigquery.request_timeout (30s)
 *   evlog.bigquery_skip_invalid_rows    sink.bigquery.skip_invalid_rows (0)
 *   evlog.bigquery_create_tables        sink.bigquery.create_tables (0)
 *   evlog.bigquery_dead_letter_table    sink.bigquery.dead_letter_table (_evlog_rejected)
 *   evlog.bigquery_api                  sink.bigquery.api: insert_all or storage_write (insert_all)
 *   evlog.bigquery_exactly_once         sink.bigquery.exactly_once: storage_write with offsets (0)
 *   evlog.bigquery_storage_url          sink.bigquery.storage_url (https://bigquerystorage.googleapis.com)
 *   evlog.bigquery_positions_dir        sink.bigquery.positions_dir: exactly_once offsets kept for crash replays (none)
 *   -- mode = opensearch (OpenSearch or Elasticsearch, _bulk)
 *   evlog.opensearch_urls               sink.opensearch.urls: node URLs, comma-separated, required
 *   evlog.opensearch_index              sink.opensearch.index ({namespace}-{type}-{date})
 *   evlog.opensearch_data_stream        sink.opensearch.data_stream: index names a data stream (0)
 *   evlog.opensearch_auth               sink.opensearch.auth: "none" (default) | basic | api_key |
 *                                       bearer
 *   evlog.opensearch_user               sink.opensearch.user (auth = basic)
 *   evlog.opensearch_password           sink.opensearch.password (auth = basic)
 *   evlog.opensearch_api_key            sink.opensearch.api_key: Authorization: ApiKey (auth = api_key)
 *   evlog.opensearch_token              sink.opensearch.token: Authorization: Bearer (auth = bearer)
 *   evlog.opensearch_ca_file            sink.opensearch.ca_file: PEM CA certificates for https
 *   evlog.opensearch_gzip               sink.opensearch.gzip (1)
 *   evlog.opensearch_timeout            sink.opensearch.timeout: one HTTP request (30s)
 *   evlog.opensearch_workers            sink.opensearch.workers: _bulk requests in flight (2)
 *   evlog.opensearch_max_docs_per_request sink.opensearch.max_docs_per_request (1000)
 *   evlog.opensearch_max_bytes_per_request sink.opensearch.max_bytes_per_request (5MB)
 *   evlog.opensearch_install_templates  sink.opensearch.install_templates: from the schemas (0)
 *   evlog.opensearch_template_prefix    sink.opensearch.template_prefix (evlog)
 *   evlog.opensearch_template_priority  sink.opensearch.template_priority (200)
 *   evlog.opensearch_composed_of        sink.opensearch.composed_of: component templates, comma-separated
 *   evlog.opensearch_json_mapping       sink.opensearch.json_mapping: object (default) | flat_object |
 *                                       flattened
 *   evlog.opensearch_dead_letter_index  sink.opensearch.dead_letter_index ({namespace}-_evlog_rejected)
 *   -- every mode
 *   evlog.schema_dir                    schemas.dir: <namespace>/<type>.json BigQuery schemas (schemas)
 *   evlog.schema_reload_interval        schemas.reload_interval: how often changed schema files are
 *                                       looked for (5s; 0s never)
 *   evlog.spool_enabled                 spool.enabled: keep what the sink cannot take on disk (on for
 *                                       forward, bigquery, opensearch; off for file, null)
 *   evlog.spool_dir                     spool.dir (/var/tmp/evlog-<uid>/<sink>-<hash of its target>,
 *                                       made 0700 when first needed)
 *   evlog.spool_max_bytes               spool.max_bytes (1GiB)
 *   evlog.spool_segment_bytes           spool.segment_bytes (64MiB)
 *   evlog.spool_fsync                   spool.fsync: fsync every append (1)
 *   evlog.batch_max_rows                batch.max_rows (500)
 *   evlog.batch_max_bytes               batch.max_bytes (1MiB)
 *   evlog.batch_max_age                 batch.max_age (1s)
 *   evlog.shutdown_timeout              batch.shutdown_timeout: MSHUTDOWN's delivery deadline (5s)
 *   evlog.queue_capacity                queue.capacity (100000)
 *   evlog.queue_max_bytes               queue.max_bytes (64MiB)
 *   evlog.max_event_bytes               queue.max_event_bytes (1MiB)
 *   evlog.queue_overflow                queue.overflow: drop (default) | spool
 *   evlog.retry_base                    retry.base (100ms)
 *   evlog.retry_cap                     retry.cap (30s)
 *   evlog.retry_max_attempts            retry.max_attempts (8)
 *   -- earlier names, refused with the new name: evlog.collector_url (evlog.forward_url),
 *      evlog.api_key (evlog.forward_api_key)
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
     * This process's counters, keyed by their names (docs/contracts.md) with labels, e.g.
     * `evlog_events_accepted_total`, `evlog_events_delivered_total`,
     * `evlog_events_dropped_total{reason="queue_full"}`, `evlog_events_rejected_total{reason="unknown_table"}`,
     * `evlog_queue_events`; plus `in_flight` (accepted - delivered - rejected - dropped) and `pid`.
     * Every family and every reason core knows is always present (0 until counted); sink errors
     * are listed per (sink, kind) seen.
     *
     * @return array<string, int>
     * @throws \Evlog\Exception for invalid configuration.
     */
    function evlog_stats(): array {}

    /** Why the last evlog_log() in this process returned false; null after a success. */
    function evlog_last_error(): ?string {}
}
