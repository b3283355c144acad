--TEST--
evlog: false for refused envelopes and a full queue, evlog_last_error(), counters reconcile, rejected rows dead-lettered
--INI--
evlog.file_dir={PWD}/out/006
evlog.schema_dir={PWD}/schemas
evlog.queue_capacity=1
--FILE--
<?php
require __DIR__ . '/helpers.inc';
var_dump(evlog_last_error());
var_dump(evlog_log('bad ns', 'any', []));
echo evlog_last_error(), "\n";
var_dump(evlog_log('t', 'bad/type', []));
var_dump(evlog_log('t', 'any', ['ok' => 1]));
var_dump(evlog_last_error());
evlog_flush(5000); // queue.capacity = 1: let the flush thread take it before the next one
// Valid envelope, no schema for t.nope: accepted now, rejected (dead-lettered) by the flush thread.
var_dump(evlog_log('t', 'nope', ['x' => 1]));
evlog_flush(5000);
// Wrong type for a schema column: rejected with the field named.
var_dump(evlog_log('t', 'typed', ['n' => 'not a number']));
var_dump(evlog_flush(5000));
// queue.capacity = 1: a burst overflows; each refusal is false and counted as queue_full.
// evlog_last_error() is cleared by the next accepted call, and the flush thread may free a slot
// before the burst's last call: read it right after a refusal.
$false = 0;
$refusal = null;
for ($i = 0; $i < 20000; $i++) {
    if (!evlog_log('t', 'any', ['i' => $i])) { $false++; $refusal ??= evlog_last_error(); }
}
var_dump($false > 0);
echo $refusal, "\n";
var_dump(evlog_flush(10000));
$s = evlog_stats();
var_dump($s['evlog_events_dropped_total{reason="queue_full"}'] === $false);
var_dump($s['evlog_events_dropped_total{reason="invalid_envelope"}']);
var_dump($s['evlog_events_rejected_total{reason="unknown_table"}'] ?? null);
var_dump(array_sum(array_filter($s, fn($k) => str_starts_with($k, 'evlog_events_rejected_total'), ARRAY_FILTER_USE_KEY)));
$dropped = array_sum(array_filter($s, fn($k) => str_starts_with($k, 'evlog_events_dropped_total'), ARRAY_FILTER_USE_KEY));
$rejected = array_sum(array_filter($s, fn($k) => str_starts_with($k, 'evlog_events_rejected_total'), ARRAY_FILTER_USE_KEY));
var_dump($s['evlog_events_accepted_total'] === 20005);
var_dump($s['evlog_events_accepted_total'] === $s['evlog_events_delivered_total'] + $rejected + $dropped, $s['in_flight'], $s['evlog_queue_events']);
var_dump($s['pid'] === getmypid());
var_dump(count(evlog_rows('t', 'any')) === $s['evlog_events_delivered_total']);
$dead = evlog_rows('t', '_evlog_rejected');
var_dump(count($dead));
foreach ($dead as $d) echo $d['error'] ?? json_encode($d), "\n";
?>
--CLEAN--
<?php require __DIR__ . '/helpers.inc'; evlog_rm(__DIR__ . '/out/006'); ?>
--EXPECTF--
NULL
bool(false)
invalid envelope field "namespace": %s
bool(false)
bool(true)
NULL
bool(true)
bool(true)
bool(true)
bool(true)
event dropped: the queue is full (%s)
bool(true)
bool(true)
int(2)
int(1)
int(2)
bool(true)
bool(true)
int(0)
int(0)
bool(true)
bool(true)
int(2)
%s
%s
