--TEST--
evlog: evlog.config TOML file with directive overrides; evlog_flush() timeout argument; mode=null
--INI--
evlog.config={PWD}/evlog-test.toml
evlog.mode="null"
--FILE--
<?php
require __DIR__ . '/helpers.inc';
for ($i = 0; $i < 100; $i++) evlog_log('t', 'any', ['i' => $i]);
var_dump(evlog_flush(5000), evlog_flush(0) || true);
$s = evlog_stats();
var_dump($s['evlog_events_delivered_total']);
// mode=null (quoted: unquoted null/off/no are empty strings to PHP's ini parser) beats the file's
// sink.kind = "file": nothing is written under the file's sink.file.dir.
var_dump(is_dir(__DIR__ . '/out/009'));
// queue.max_event_bytes = 64 comes from the file: a bigger event is refused.
var_dump(evlog_log('t', 'any', ['big' => str_repeat('x', 100)]));
echo evlog_last_error(), "\n";
expect_exception(fn() => evlog_flush(-1));
?>
--EXPECTF--
bool(true)
bool(true)
int(100)
bool(false)
bool(false)
%s64%s
Evlog\Exception: evlog_flush: timeout_ms must be >= 0, got -1
