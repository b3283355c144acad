--TEST--
evlog: two destinations (BigQuery test server, osmem-server), routes, sample and per-destination transforms from PHP: every event once where routed, os copies transformed, the sampled ids those of the Python SDK's run
--SKIPIF--
<?php if (!getenv('PHPT_EVLOG_EXT') || !getenv('PHPT_EVLOG_BQ_SERVER') || !getenv('PHPT_EVLOG_OSMEM')) die('skip needs PHPT_EVLOG_EXT, PHPT_EVLOG_BQ_SERVER and PHPT_EVLOG_OSMEM'); ?>
--FILE--
<?php
// Issue 17's end-to-end test from PHP (the SDK direct). The configuration is the Python test's
// (tests/e2e/destinations.toml: page views to bq and os, transactions to bq and, sampled at 0.3
// by id, to os; every copy loses `secret`, os's has `email` and `coupon` hashed and `card`
// masked), the events the same (e2e-events.inc), and the ids os must take are
// tests/e2e/sampled-transactions.txt, which a real run of the Python SDK wrote and which the
// Python test checks the SDK and the collector against: so PHP, Python and the collector
// sample alike.
require __DIR__ . '/helpers.inc';
require __DIR__ . '/e2e-events.inc';
$root = dirname(__DIR__, 4);
$out = __DIR__ . '/out/017';
$schemas = "$root/collector/examples/schemas";
@mkdir($out, 0777, true);
const PROJECT = 'evlog-e2e';
const HASH_KEY = 'e2e-test-hash-key-0123456789';

[$bq, $m] = evlog_spawn([getenv('PHPT_EVLOG_BQ_SERVER'), '--port', '0', '--schemas', $schemas, '--project', PROJECT], '/listening on (\S+)/');
$bq_url = $m[1];
[$os, $m] = evlog_spawn([getenv('PHPT_EVLOG_OSMEM'), '--addr', '127.0.0.1:0', '--no-ja', '--parent-pid', (string) getmypid()], '/"url"\s*:\s*"([^"]+)"/');
$os_url = $m[1];
file_put_contents("$out/evlog.toml", strtr(file_get_contents("$root/tests/e2e/destinations.toml"), [
    '@BQ_URL@' => "$bq_url/bigquery/v2", '@OS_URL@' => $os_url, '@SCHEMAS@' => $schemas,
]));

// The SDK: its own process, configured by the file alone.
$inc = __DIR__ . '/e2e-events.inc';
[$rc, $text] = evlog_php(['evlog.config' => "$out/evlog.toml"], ['-r', "require '$inc'; e2e_log_all(); echo json_encode(['flushed' => evlog_flush(90000)] + evlog_stats());"]);
$s = json_decode($text, true) ?? exit("SDK process failed ($rc): $text\n");

/** A JSON request to a loopback test server. */
function req(string $method, string $url, ?array $body = null): array {
    $ctx = stream_context_create(['http' => ['method' => $method, 'timeout' => 30, 'ignore_errors' => true,
        'header' => "Content-Type: application/json\r\n", 'content' => $body === null ? '' : json_encode($body)]]);
    $text = @file_get_contents($url, false, $ctx);
    if ($text === false) throw new RuntimeException("$method $url failed");
    return json_decode($text, true, 512, JSON_THROW_ON_ERROR);
}

/** Rows of the day table <table>20261122 by event_id (tabledata.list); a second row with one id fails. */
function bq_rows(string $bq_url, string $table): array {
    $api = "$bq_url/bigquery/v2/projects/" . PROJECT . "/datasets/events/tables";
    $fields = array_column(req('GET', "$api/{$table}20261122")['schema']['fields'], 'name');
    $rows = [];
    $page = '';
    do {
        $list = req('GET', "$api/{$table}20261122/data?maxResults=1000" . ($page !== '' ? "&pageToken=$page" : ''));
        foreach ($list['rows'] ?? [] as $r) {
            $row = array_combine($fields, array_map(fn($c) => $c['v'], $r['f']));
            if (isset($rows[$row['event_id']])) throw new RuntimeException("{$row['event_id']} stored twice in $table");
            $rows[$row['event_id']] = $row;
        }
        $page = $list['pageToken'] ?? '';
    } while ($page !== '');
    return $rows;
}

/** Documents of an index by _id (all of them: the total must be what the search returned). */
function os_docs(string $os_url, string $index): array {
    req('POST', "$os_url/$index/_refresh");
    $r = req('POST', "$os_url/$index/_search", ['query' => ['match_all' => new stdClass()], 'size' => 10000, 'track_total_hits' => true]);
    $docs = [];
    foreach ($r['hits']['hits'] as $h) $docs[$h['_id']] = $h['_source'];
    if ($r['hits']['total']['value'] !== count($docs)) throw new RuntimeException("$index: total {$r['hits']['total']['value']}, distinct " . count($docs));
    return $docs;
}

$bq_txn = bq_rows($bq_url, 'transaction');
$bq_pv = bq_rows($bq_url, 'page_view');
$os_txn = os_docs($os_url, 'events-transaction-2026.11.22');
$os_pv = os_docs($os_url, 'events-page_view-2026.11.22');
$bq_tables = array_map(fn($t) => $t['tableReference']['tableId'], req('GET', "$bq_url/bigquery/v2/projects/" . PROJECT . "/datasets/events/tables")['tables']);
sort($bq_tables);
$os_indices = array_column(req('GET', "$os_url/_cat/indices?format=json"), 'index');
sort($os_indices);

$all_txn = array_map('e2e_txn_id', range(0, E2E_N_TXN - 1));
$all_pv = array_map('e2e_pv_id', range(0, E2E_N_PV - 1));
$same = fn(array $a, array $b) => (sort($a) || true) && (sort($b) || true) && $a === $b;
$sampled = array_keys($os_txn);
$expected = preg_split('/\s+/', trim(file_get_contents("$root/tests/e2e/sampled-transactions.txt")));
$n = count($sampled);
$mean = E2E_N_TXN * 0.3;
$sd = sqrt(E2E_N_TXN * 0.3 * 0.7);

echo "sdk: flushed=", var_export($s['flushed'], true), " accepted={$s['evlog_events_accepted_total']} delivered={$s['evlog_events_delivered_total']} fanned_out={$s['evlog_events_fanned_out_total']}\n";
foreach (['bq' => E2E_N_TXN + E2E_N_PV, 'os' => E2E_N_PV + $n] as $d => $copies) {
    $bad = array_filter($s, fn($v, $k) => $v !== 0 && str_contains($k, "destination=\"$d\"") && preg_match('/^evlog_events_(rejected|dropped)_total/', $k), ARRAY_FILTER_USE_BOTH);
    echo "sdk $d: accepted = delivered = copies routed there: ",
        var_export($s["evlog_events_accepted_total{destination=\"$d\"}"] === $copies && $s["evlog_events_delivered_total{destination=\"$d\"}"] === $copies, true),
        ", nothing rejected or dropped: ", var_export($bad === [], true), "\n";
}
echo "bq: every transaction once: ", var_export($same(array_keys($bq_txn), $all_txn), true), ", every page view once: ", var_export($same(array_keys($bq_pv), $all_pv), true), "\n";
echo "os: every page view once: ", var_export($same(array_keys($os_pv), $all_pv), true), ", sampled transactions within 5 sd of 0.3: ", var_export(abs($n - $mean) <= 5 * $sd, true), "\n";
echo "os: the sampled ids are those of sampled-transactions.txt (the Python SDK's run): ", var_export($same($sampled, $expected), true), "\n";
echo "no dead letters: bq tables ", implode(' ', $bq_tables), "; os indices ", implode(' ', $os_indices), "\n";

// Transforms: bq's copies as logged but the secret; os's hashed and masked too. `other` is
// compared as a map (==): a copy a rule touched has its unknown fields in key order.
$bad = [];
for ($i = 0; $i < E2E_N_TXN; $i++) {
    $e = e2e_transaction($i);
    $id = e2e_txn_id($i);
    $row = $bq_txn[$id];
    if ($row['coupon'] !== $e['coupon'] || json_decode($row['other'], true) != ['email' => $e['email'], 'card' => $e['card']]) $bad[] = "bq $id";
    if (!isset($os_txn[$id])) continue;
    $doc = $os_txn[$id];
    $want = ['email' => hash_hmac('sha256', $e['email'], HASH_KEY), 'card' => str_repeat('*', 12) . substr($e['card'], -4)];
    if ($doc['coupon'] !== hash_hmac('sha256', $e['coupon'], HASH_KEY) || json_decode($doc['other'], true) != $want || $doc['user_id'] !== $i + 1) $bad[] = "os $id";
}
for ($i = 0; $i < E2E_N_PV; $i++) {
    $e = e2e_page_view($i);
    $id = e2e_pv_id($i);
    if (json_decode($bq_pv[$id]['other'], true) !== ['email' => $e['email']]) $bad[] = "bq $id";
    if (json_decode($os_pv[$id]['other'], true) !== ['email' => hash_hmac('sha256', $e['email'], HASH_KEY)] || $os_pv[$id]['url'] !== $e['url']) $bad[] = "os $id";
}
echo "transforms: bq as logged less the secret, os hashed and masked: ", $bad === [] ? 'all' : implode(', ', array_slice($bad, 0, 5)), "\n";
echo 'servers exit: ', evlog_stop($bq), ' ', evlog_stop($os) >= 0 ? 'ok' : 'failed', "\n";
?>
--CLEAN--
<?php require __DIR__ . '/helpers.inc'; evlog_rm(__DIR__ . '/out/017'); ?>
--EXPECT--
sdk: flushed=true accepted=2500 delivered=3594 fanned_out=1094
sdk bq: accepted = delivered = copies routed there: true, nothing rejected or dropped: true
sdk os: accepted = delivered = copies routed there: true, nothing rejected or dropped: true
bq: every transaction once: true, every page view once: true
os: every page view once: true, sampled transactions within 5 sd of 0.3: true
os: the sampled ids are those of sampled-transactions.txt (the Python SDK's run): true
no dead letters: bq tables page_view page_view20261122 transaction transaction20261122; os indices events-page_view-2026.11.22 events-transaction-2026.11.22
transforms: bq as logged less the secret, os hashed and masked: all
servers exit: 0 ok
