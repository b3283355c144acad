--TEST--
evlog: invalid configuration is an Evlog\Exception naming the directive and the rule (every call, no crash)
--INI--
evlog.batch_max_rows=0
--FILE--
<?php
require __DIR__ . '/helpers.inc';
expect_exception(fn() => evlog_log('t', 'any', []));
expect_exception(fn() => evlog_stats());
expect_exception(fn() => evlog_flush());
?>
--EXPECT--
Evlog\Exception: invalid setting batch.max_rows: must be 1..=50000 (BigQuery's rows per request) (php.ini: evlog.batch_max_rows)
Evlog\Exception: invalid setting batch.max_rows: must be 1..=50000 (BigQuery's rows per request) (php.ini: evlog.batch_max_rows)
Evlog\Exception: invalid setting batch.max_rows: must be 1..=50000 (BigQuery's rows per request) (php.ini: evlog.batch_max_rows)
