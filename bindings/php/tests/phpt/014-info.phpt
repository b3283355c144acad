--TEST--
evlog: php --ri evlog shows each directive's effective value and source (directive, evlog.config file, EVLOG_* env, default), secrets redacted; and the error of an invalid configuration
--SKIPIF--
<?php if (!getenv('PHPT_EVLOG_EXT')) die('skip needs PHPT_EVLOG_EXT'); ?>
--FILE--
<?php
require __DIR__ . '/helpers.inc';
$out = __DIR__ . '/out/014';
@mkdir($out, 0777, true);
file_put_contents("$out/evlog.toml", "[batch]\nmax_age = \"3s\"\n[sink.bigquery]\ntoken = \"file-s3cret\"\n");
$env = ['EVLOG_RETRY_CAP' => '7s', 'PATH' => getenv('PATH')];
[$rc, $text] = evlog_php([
    'evlog.config' => "$out/evlog.toml", 'evlog.mode' => 'forward', 'evlog.forward_url' => 'http://127.0.0.1:9',
    'evlog.forward_api_key' => 'ini-s3cret', 'evlog.forward_gzip' => 'off', 'evlog.retry_cap' => '5s',
], ['--ri', 'evlog'], $env);
echo "exit $rc\n";
$show = ['pipeline', 'Directive', 'evlog.config', 'evlog.mode', 'evlog.forward_url', 'evlog.forward_api_key', 'evlog.forward_compression', 'evlog.forward_gzip',
    'evlog.forward_timeout', 'evlog.bigquery_token', 'evlog.bigquery_auth', 'evlog.batch_max_age', 'evlog.retry_cap',
    'evlog.spool_enabled', 'evlog.collector_url'];
foreach (explode("\n", $text) as $line) {
    if (in_array(strtok($line, ' '), $show, true)) echo str_replace($out, 'OUT', $line), "\n";
}
echo 'secrets in the output: ', var_export(str_contains($text, 's3cret'), true), "\n";
echo 'rows: ', count(preg_grep('/^evlog\.\w+ => /', explode("\n", $text))), ' = ', count(ini_get_all('evlog')), "\n";

// An invalid configuration: its error, then the directives as written (secrets still redacted).
[$rc, $text] = evlog_php(['evlog.mode' => 'null', 'evlog.forward_api_key' => 'ini-s3cret'], ['--ri', 'evlog']);
foreach (explode("\n", $text) as $line) {
    if (in_array(strtok($line, ' '), ['configuration', 'evlog.mode', 'evlog.forward_api_key', 'evlog.file_dir'], true)) echo $line, "\n";
}
echo 'secrets in the output: ', var_export(str_contains($text, 's3cret'), true), "\n";
?>
--CLEAN--
<?php require __DIR__ . '/helpers.inc'; evlog_rm(__DIR__ . '/out/014'); ?>
--EXPECT--
exit 0
pipeline => not started in this process (starts on first evlog_log())
Directive => Effective value => Source
evlog.config => OUT/evlog.toml => php.ini
evlog.mode => forward => php.ini
evlog.forward_url => http://127.0.0.1:9 => php.ini
evlog.forward_api_key => (set, redacted) => php.ini
evlog.forward_compression => none (from evlog.forward_gzip) => default
evlog.forward_gzip => false => php.ini
evlog.forward_timeout => 10s => default
evlog.bigquery_auth => application_default => default
evlog.bigquery_token => (set, redacted) => evlog.config file
evlog.spool_enabled => auto (on for forward, bigquery, opensearch) => default
evlog.batch_max_age => 3s => evlog.config file
evlog.retry_cap => 7s => env EVLOG_RETRY_CAP
evlog.collector_url => (renamed evlog.forward_url) => -
secrets in the output: false
rows: 74 = 74
configuration error => evlog.mode is set to an empty value: PHP's ini parser reads the bare words null, off, no, false and none as ""; quote the value (e.g. evlog.mode="null" for the null sink), or remove the line to keep the value from evlog.config or the default => -
evlog.mode => "" => php.ini
evlog.file_dir => (not set) => -
evlog.forward_api_key => (set, redacted) => php.ini
secrets in the output: false
