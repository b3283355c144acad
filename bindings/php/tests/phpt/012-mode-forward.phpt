--TEST--
evlog: mode=forward (evlog.forward_format default: events, bodies zstd-compressed) into a real collector process (open, file sink): every event stored once, invalid ones dead-lettered by the collector and counted rejected by the SDK, counters reconcile
--SKIPIF--
<?php if (!getenv('PHPT_EVLOG_EXT') || !getenv('PHPT_EVLOG_COLLECTOR')) die('skip needs PHPT_EVLOG_EXT and PHPT_EVLOG_COLLECTOR'); ?>
--FILE--
<?php
require __DIR__ . '/helpers.inc';
$out = __DIR__ . '/out/012';
$schemas = __DIR__ . '/schemas';
@mkdir($out, 0777, true);
// Open collector (no api_keys): the API key directive is tested by 013 against a recording server.
file_put_contents("$out/collector.toml", <<<TOML
[collector]
wal_dir = "$out/wal"
fsync = "never"
[sink]
kind = "file"
[sink.file]
dir = "$out/collector-data"
[schemas]
dir = "$schemas"
[batch]
max_age = "50ms"
TOML);
[$collector, $m] = evlog_spawn([getenv('PHPT_EVLOG_COLLECTOR'), '--config', "$out/collector.toml", '--listen', '127.0.0.1:0'], '/listening on (\S+)/');
$url = "http://{$m[1]}";

// The SDK side: its own process, configured only by directives.
$code = <<<'PHP'
for ($i = 0; $i < 300; $i++) evlog_log('t', 'any', ['i' => $i], ['id' => "fw-$i"]);
evlog_log('t', 'nope', ['x' => 1], ['id' => 'fw-nope']);      // no schema: rejected by the collector (422)
evlog_log('t', 'typed', ['n' => 'NaN?'], ['id' => 'fw-typed']); // wrong type: rejected by the collector (422)
echo json_encode(['flushed' => evlog_flush(10000)] + evlog_stats());
PHP;
[$rc, $text] = evlog_php([
    'evlog.mode' => 'forward', 'evlog.forward_url' => $url, 'evlog.forward_compression' => 'zstd',
    'evlog.schema_dir' => $schemas, 'evlog.batch_max_age' => '50ms', 'evlog.batch_max_rows' => '100',
], ['-r', $code]);
$s = json_decode($text, true) ?? exit("SDK process failed ($rc): $text\n");
$sum = fn($prefix) => array_sum(array_filter($s, fn($k) => str_starts_with($k, $prefix), ARRAY_FILTER_USE_KEY));
echo "sdk: flushed=", var_export($s['flushed'], true), " accepted={$s['evlog_events_accepted_total']} delivered={$s['evlog_events_delivered_total']}",
    " rejected=", $sum('evlog_events_rejected_total'), " dropped=", $sum('evlog_events_dropped_total'), "\n";

// The collector side: wait until it has streamed everything out of its log (the 300 rows to the
// table, the 2 dead letters to the dead-letter table), then read its files.
$metrics = evlog_wait(function () use ($url) {
    $t = evlog_get("$url/metrics");
    return evlog_metric($t, 'evlog_events_delivered_total') + evlog_metric($t, 'evlog_events_rejected_total') >= 302 ? $t : null;
}, 30) ?: evlog_get("$url/metrics");
foreach (['evlog_events_accepted_total', 'evlog_events_delivered_total', 'evlog_events_rejected_total', 'evlog_events_dropped_total'] as $k) {
    echo "collector: $k ", evlog_metric($metrics, $k), "\n";
}
$batch_200 = preg_match('/^evlog_collector_http_responses_total\{(?=[^}]*path="\/v1\/batch")(?=[^}]*code="200")[^}]*\} [1-9]/m', $metrics);
echo 'collector: POST /v1/batch answered 200: ', $batch_200 ? 'yes' : 'no', "\n";
echo 'collector exit: ', evlog_stop($collector), "\n";
$ids = [];
foreach (glob("$out/collector-data/t/any*.ndjson") as $f) {
    foreach (file($f, FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES) as $line) $ids[] = json_decode($line, true)['event_id'];
}
echo 'rows ', count($ids), ', distinct ', count(array_unique($ids)), ', all fw-0..fw-299: ', var_export(array_diff(array_map(fn($i) => "fw-$i", range(0, 299)), $ids) === [], true), "\n";
$dead = [];
foreach (glob("$out/collector-data/t/_evlog_rejected*.ndjson") as $f) {
    foreach (file($f, FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES) as $line) { $d = json_decode($line, true); $dead[] = $d['reason'] ?? '?'; }
}
sort($dead);
echo 'dead letters: ', implode(', ', $dead), "\n";
?>
--CLEAN--
<?php require __DIR__ . '/helpers.inc'; evlog_rm(__DIR__ . '/out/012'); ?>
--EXPECT--
sdk: flushed=true accepted=302 delivered=300 rejected=2 dropped=0
collector: evlog_events_accepted_total 302
collector: evlog_events_delivered_total 300
collector: evlog_events_rejected_total 2
collector: evlog_events_dropped_total 0
collector: POST /v1/batch answered 200: yes
collector exit: 0
rows 300, distinct 300, all fw-0..fw-299: true
dead letters: invalid_value, unknown_table
