--TEST--
evlog: extension loaded, functions, exception class, ini directives
--FILE--
<?php
var_dump(extension_loaded('evlog'));
foreach (['evlog_log', 'evlog_flush', 'evlog_stats', 'evlog_last_error'] as $f) {
    echo $f, ': ', function_exists($f) ? 'yes' : 'no', "\n";
}
var_dump(is_subclass_of('Evlog\Exception', 'Exception'));
echo (new ReflectionFunction('evlog_log'))->getNumberOfRequiredParameters(), "\n";
echo (new ReflectionFunction('evlog_flush'))->getParameters()[0]->getDefaultValue(), "\n";
$dirs = array_keys(ini_get_all('evlog'));
echo implode(' ', $dirs), "\n";
// PHP_INI_SYSTEM: a request cannot change them.
var_dump(ini_set('evlog.mode', 'null'));
?>
--EXPECT--
bool(true)
evlog_log: yes
evlog_flush: yes
evlog_stats: yes
evlog_last_error: yes
bool(true)
3
1000
evlog.api_key evlog.batch_max_age evlog.batch_max_bytes evlog.batch_max_rows evlog.bigquery_api evlog.bigquery_auth evlog.bigquery_base_url evlog.bigquery_create_tables evlog.bigquery_credentials evlog.bigquery_dead_letter_table evlog.bigquery_exactly_once evlog.bigquery_gzip evlog.bigquery_max_bytes_per_request evlog.bigquery_max_rows_per_request evlog.bigquery_positions_dir evlog.bigquery_project evlog.bigquery_request_timeout evlog.bigquery_skip_invalid_rows evlog.bigquery_storage_url evlog.bigquery_token evlog.bigquery_workers evlog.collector_url evlog.config evlog.file_dead_letter_table evlog.file_dir evlog.file_fsync evlog.file_max_open_files evlog.forward_api_key evlog.forward_app evlog.forward_compression evlog.forward_format evlog.forward_gzip evlog.forward_max_rows_per_request evlog.forward_report_interval evlog.forward_timeout evlog.forward_url evlog.forward_urls evlog.forward_workers evlog.max_event_bytes evlog.mode evlog.opensearch_api_key evlog.opensearch_auth evlog.opensearch_ca_file evlog.opensearch_composed_of evlog.opensearch_data_stream evlog.opensearch_dead_letter_index evlog.opensearch_gzip evlog.opensearch_index evlog.opensearch_install_templates evlog.opensearch_json_mapping evlog.opensearch_max_bytes_per_request evlog.opensearch_max_docs_per_request evlog.opensearch_password evlog.opensearch_template_prefix evlog.opensearch_template_priority evlog.opensearch_timeout evlog.opensearch_token evlog.opensearch_urls evlog.opensearch_user evlog.opensearch_workers evlog.queue_capacity evlog.queue_max_bytes evlog.queue_overflow evlog.retry_base evlog.retry_cap evlog.retry_max_attempts evlog.schema_dir evlog.schema_reload_interval evlog.shutdown_timeout evlog.spool_dir evlog.spool_enabled evlog.spool_fsync evlog.spool_max_bytes evlog.spool_segment_bytes
bool(false)
