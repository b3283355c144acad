--TEST--
evlog: $options time (DateTimeInterface, epoch millis int/float) and id; option misuse
--INI--
evlog.file_dir={PWD}/out/005
evlog.schema_dir={PWD}/schemas
--FILE--
<?php
require __DIR__ . '/helpers.inc';
var_dump(evlog_log('t', 'any', ['k' => 1], ['time' => new DateTimeImmutable('2026-01-02T03:04:05.678901+01:00'), 'id' => 'a-1']));
var_dump(evlog_log('t', 'any', ['k' => 2], ['time' => 1700000000123, 'id' => 'a-2']));
var_dump(evlog_log('t', 'any', ['k' => 3], ['time' => 1700000000123.5, 'id' => 'a-3']));
var_dump(evlog_log('t', 'any', ['k' => 4], ['time' => null, 'id' => null]));
var_dump(evlog_log('t', 'any', ['k' => 5], null));
var_dump(evlog_flush(5000));
$rows = evlog_rows('t', 'any');
usort($rows, fn($a, $b) => strcmp($a['other'], $b['other']));
foreach ($rows as $r) {
    $id = str_starts_with($r['event_id'], 'a-') ? $r['event_id'] : 'uuid:' . (preg_match('/^[0-9a-f-]{36}$/', $r['event_id']) ? 'ok' : 'bad');
    echo $id, ' ', str_starts_with($r['event_id'], 'a-') ? $r['event_time'] : 'now', ' ', $r['other'], "\n";
}
expect_exception(fn() => evlog_log('t', 'any', [], ['time' => '2026-01-01']));
expect_exception(fn() => evlog_log('t', 'any', [], ['time' => new stdClass]));
expect_exception(fn() => evlog_log('t', 'any', [], ['time' => NAN]));
expect_exception(fn() => evlog_log('t', 'any', [], ['id' => 5]));
expect_exception(fn() => evlog_log('t', 'any', [], ['ttl' => 5]));
// Out of BigQuery's TIMESTAMP range: core refuses the envelope (false, counted), no exception.
var_dump(evlog_log('t', 'any', [], ['time' => PHP_INT_MAX]));
echo evlog_last_error(), "\n";
var_dump(evlog_log('t', 'any', [], ['id' => str_repeat('x', 200)]));
echo evlog_last_error(), "\n";
?>
--CLEAN--
<?php require __DIR__ . '/helpers.inc'; evlog_rm(__DIR__ . '/out/005'); ?>
--EXPECTF--
bool(true)
bool(true)
bool(true)
bool(true)
bool(true)
bool(true)
a-1 2026-01-02T02:04:05.678901Z {"k":1}
a-2 2023-11-14T22:13:20.123000Z {"k":2}
a-3 2023-11-14T22:13:20.123500Z {"k":3}
uuid:ok now {"k":4}
uuid:ok now {"k":5}
Evlog\Exception: option time: must be a DateTimeInterface or epoch milliseconds (int/float), got String
Evlog\Exception: option time: must be a DateTimeInterface or epoch milliseconds (int/float)
Evlog\Exception: option time: must be a finite number of epoch milliseconds
Evlog\Exception: option id: must be a string, got Long
Evlog\Exception: unknown option "ttl" (known options: time, id)
bool(false)
invalid envelope field "time": %s
bool(false)
invalid envelope field "id": %s
