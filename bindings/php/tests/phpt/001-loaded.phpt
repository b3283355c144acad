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
evlog.api_key evlog.batch_max_age evlog.batch_max_bytes evlog.batch_max_rows evlog.collector_url evlog.config evlog.file_dir evlog.file_fsync evlog.max_event_bytes evlog.mode evlog.queue_capacity evlog.queue_max_bytes evlog.retry_base evlog.retry_cap evlog.retry_max_attempts evlog.schema_dir evlog.shutdown_timeout evlog.spool_dir evlog.spool_enabled evlog.spool_max_bytes
bool(false)
