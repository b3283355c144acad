--TEST--
evlog: mode=bigquery into the BigQuery test server (auth "none", base URL from php.ini): every event stored once, counters reconcile
--SKIPIF--
<?php if (!getenv('PHPT_EVLOG_EXT') || !getenv('PHPT_EVLOG_BQ_SERVER')) die('skip needs PHPT_EVLOG_EXT and PHPT_EVLOG_BQ_SERVER'); ?>
--FILE--
<?php
require __DIR__ . '/helpers.inc';
$schemas = __DIR__ . '/schemas';
[$bq, $m] = evlog_spawn([getenv('PHPT_EVLOG_BQ_SERVER'), '--port', '0', '--schemas', $schemas, '--project', 'evlog-phpt'], '/listening on (\S+)/');
$api = "{$m[1]}/bigquery/v2/projects/evlog-phpt";

$code = <<<'PHP'
for ($i = 0; $i < 300; $i++) evlog_log('t', 'any', ['i' => $i], ['id' => "bq-$i"]);
echo json_encode(['flushed' => evlog_flush(10000)] + evlog_stats());
PHP;
[$rc, $text] = evlog_php([
    'evlog.mode' => 'bigquery', 'evlog.bigquery_project' => 'evlog-phpt', 'evlog.bigquery_auth' => '"none"',
    'evlog.bigquery_base_url' => "{$m[1]}/bigquery/v2", 'evlog.bigquery_max_rows_per_request' => '100',
    'evlog.schema_dir' => $schemas, 'evlog.batch_max_age' => '50ms',
], ['-r', $code]);
$s = json_decode($text, true) ?? exit("SDK process failed ($rc): $text\n");
$sum = fn($prefix) => array_sum(array_filter($s, fn($k) => str_starts_with($k, $prefix), ARRAY_FILTER_USE_KEY));
echo "sdk: flushed=", var_export($s['flushed'], true), " accepted={$s['evlog_events_accepted_total']} delivered={$s['evlog_events_delivered_total']}",
    " rejected=", $sum('evlog_events_rejected_total'), " dropped=", $sum('evlog_events_dropped_total'), "\n";

$stats = json_decode(evlog_get("{$m[1]}/_stats"), true);
echo "server: insertAll requests >= 3: ", var_export($stats['insert_all_requests'] >= 3, true),
    ", rows_stored {$stats['rows_stored']}, duplicates_dropped {$stats['duplicates_dropped']}, rows_invalid {$stats['rows_invalid']}\n";
// Read the rows back through tabledata.list (day-sharded tables any<YYYYMMDD>).
$ids = [];
foreach (json_decode(evlog_get("$api/datasets/t/tables"), true)['tables'] ?? [] as $t) {
    $table = $t['tableReference']['tableId'];
    if (!preg_match('/^any\d{8}$/', $table)) continue;
    $fields = array_column(json_decode(evlog_get("$api/datasets/t/tables/$table"), true)['schema']['fields'], 'name');
    $col = array_search('event_id', $fields, true);
    $page = '';
    do {
        $list = json_decode(evlog_get("$api/datasets/t/tables/$table/data?maxResults=100" . ($page !== '' ? '&pageToken=' . urlencode($page) : '')), true);
        foreach ($list['rows'] ?? [] as $r) $ids[] = $r['f'][$col]['v'];
        $page = $list['pageToken'] ?? '';
    } while ($page !== '');
}
echo 'rows ', count($ids), ', distinct ', count(array_unique($ids)), ', all bq-0..bq-299: ', var_export(array_diff(array_map(fn($i) => "bq-$i", range(0, 299)), $ids) === [], true), "\n";
echo 'server exit: ', evlog_stop($bq), "\n";
?>
--EXPECT--
sdk: flushed=true accepted=300 delivered=300 rejected=0 dropped=0
server: insertAll requests >= 3: true, rows_stored 300, duplicates_dropped 0, rows_invalid 0
rows 300, distinct 300, all bq-0..bq-299: true
server exit: 0
