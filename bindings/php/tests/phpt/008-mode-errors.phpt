--TEST--
evlog: mode names are core's sink kinds; collector, unknown modes, renamed and unknown directives are refused naming the right one
--SKIPIF--
<?php if (!getenv('PHPT_EVLOG_EXT')) die('skip needs PHPT_EVLOG_EXT'); ?>
--INI--
evlog.mode=collector
evlog.forward_url=http://127.0.0.1:9/
--FILE--
<?php
require __DIR__ . '/helpers.inc';
expect_exception(fn() => evlog_log('t', 'any', []));
echo ini_get('evlog.forward_url'), "\n";
// Each of these in its own process: the configuration is read once per process.
$try = 'try { evlog_stats(); echo "accepted\n"; } catch (Evlog\Exception $e) { echo $e->getMessage(), "\n"; }';
foreach ([
    ['evlog.mode' => 'kafka'],
    ['evlog.mode' => 'forward'],
    ['evlog.mode' => 'bigquery'],
    ['evlog.collector_url' => 'http://127.0.0.1:9/'],
    ['evlog.api_key' => 'k'],
    ['evlog.spool_enable' => '1'],
    ['evlog.bigquery_auth' => 'oauth'],
    ['evlog.queue_overflow' => 'spool'],
    ['evlog.mode' => 'forward', 'evlog.forward_url' => 'http://127.0.0.1:9/', 'evlog.forward_workers' => '0'],
    ['evlog.mode' => 'forward', 'evlog.forward_url' => 'http://127.0.0.1:9/'],
    ['evlog.mode' => 'bigquery', 'evlog.bigquery_project' => 'p', 'evlog.bigquery_auth' => 'token'],
] as $ini) {
    echo implode(' ', array_map(fn($k, $v) => "$k=$v", array_keys($ini), $ini)), ': ', evlog_php($ini, ['-r', $try])[1];
}
?>
--EXPECT--
Evlog\Exception: evlog.mode = collector: the sink that sends events to an evlog collector is called forward: set evlog.mode=forward and evlog.forward_url
http://127.0.0.1:9/
evlog.mode=kafka: evlog.mode = kafka: unknown mode (expected file, null, forward, bigquery, opensearch)
evlog.mode=forward: invalid setting sink.forward.url: is required with sink.kind = "forward" (or sink.forward.urls for several collectors) (php.ini: evlog.forward_url)
evlog.mode=bigquery: invalid setting sink.bigquery.project: is required with sink.kind = "bigquery" (php.ini: evlog.bigquery_project)
evlog.collector_url=http://127.0.0.1:9/: evlog.collector_url was renamed evlog.forward_url (it is used with evlog.mode=forward); set evlog.forward_url instead
evlog.api_key=k: evlog.api_key was renamed evlog.forward_api_key (it is used with evlog.mode=forward); set evlog.forward_api_key instead
evlog.spool_enable=1: unknown php.ini directive evlog.spool_enable: no such evlog setting (`php --ri evlog` lists them)
evlog.bigquery_auth=oauth: evlog.bigquery_auth = oauth: must be one of application_default, service_account, token, none
evlog.queue_overflow=spool: invalid setting queue.overflow: "spool" needs spool.enabled = true (by default only forward, bigquery and opensearch destinations have a spool) (php.ini: evlog.queue_overflow)
evlog.mode=forward evlog.forward_url=http://127.0.0.1:9/ evlog.forward_workers=0: invalid setting sink.forward.workers: must be 1..=256 (php.ini: evlog.forward_workers)
evlog.mode=forward evlog.forward_url=http://127.0.0.1:9/: accepted
evlog.mode=bigquery evlog.bigquery_project=p evlog.bigquery_auth=token: invalid setting sink.bigquery.token: is required with auth = "token" (php.ini: evlog.bigquery_token)
