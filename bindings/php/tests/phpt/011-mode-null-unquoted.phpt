--TEST--
evlog: evlog.mode=null without quotes (PHP's ini parser makes it "") is refused with how to write it; bare none for bigquery_auth too; bare off is off
--SKIPIF--
<?php if (!getenv('PHPT_EVLOG_EXT')) die('skip needs PHPT_EVLOG_EXT'); ?>
--INI--
evlog.mode=null
--FILE--
<?php
require __DIR__ . '/helpers.inc';
var_dump(ini_get('evlog.mode'));
expect_exception(fn() => evlog_log('t', 'any', []));
$try = 'try { evlog_stats(); echo "accepted\n"; } catch (Evlog\Exception $e) { echo $e->getMessage(), "\n"; }';
// Quoted, it is the null sink.
echo evlog_php(['evlog.mode' => '"null"'], ['-r', 'var_dump(evlog_log("t", "any", []), evlog_flush(5000));'])[1];
echo evlog_php(['evlog.mode' => 'bigquery', 'evlog.bigquery_project' => 'p', 'evlog.bigquery_auth' => 'none'], ['-r', $try])[1];
echo evlog_php(['evlog.mode' => 'bigquery', 'evlog.bigquery_project' => 'p', 'evlog.bigquery_auth' => '"none"'], ['-r', $try])[1];
echo evlog_php(['evlog.batch_max_rows' => ''], ['-r', $try])[1];
// A boolean reads bare off (and an empty value) as off.
echo evlog_php(['evlog.mode' => '"null"', 'evlog.file_fsync' => 'off', 'evlog.spool_fsync' => 'no'], ['-r', $try])[1];
?>
--EXPECT--
string(0) ""
Evlog\Exception: evlog.mode is set to an empty value: PHP's ini parser reads the bare words null, off, no, false and none as ""; quote the value (e.g. evlog.mode="null" for the null sink), or remove the line to keep the value from evlog.config or the default
bool(true)
bool(true)
evlog.bigquery_auth is set to an empty value: PHP's ini parser reads the bare words null, off, no, false and none as ""; quote the value (e.g. evlog.bigquery_auth="none"), or remove the line to keep the value from evlog.config or the default
accepted
evlog.batch_max_rows is set to an empty value: PHP's ini parser reads the bare words null, off, no, false and none as ""; quote the value, or remove the line to keep the value from evlog.config or the default
accepted
