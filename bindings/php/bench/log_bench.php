<?php
// Per-call cost of evlog_log() vs a curl POST to a local HTTP endpoint vs appending a JSON line to
// a file, for the same 6-field event, in one PHP process. Prints a Markdown table.
//   php -d extension=... -d evlog.mode='"null"' log_bench.php URL FILE
$url = $argv[1];
$file = $argv[2];
$event = ['user_id' => 42, 'amount' => '9.99', 'currency' => 'EUR', 'coupon' => 'XMAS', 'ok' => true, 'ms' => 1700000000.123];

/** Median of per-call µs over $rounds rounds of $n calls each. */
function bench(callable $f, int $rounds, int $n, ?callable $between = null): array {
    $per = [];
    for ($r = 0; $r < $rounds; $r++) {
        $t = hrtime(true);
        for ($i = 0; $i < $n; $i++) $f($i);
        $per[] = (hrtime(true) - $t) / 1000 / $n;
        if ($between) $between();
    }
    sort($per);
    return [$per[intdiv(count($per), 2)], $per[intdiv(count($per) * 9, 10)]];
}

// evlog_log: 200 rounds x 1000 calls; the queue is drained (untimed) between rounds.
$false = 0;
for ($i = 0; $i < 5000; $i++) evlog_log('events', 'transaction', $event); // warm up, starts the thread
evlog_flush(10000);
$evlog = bench(function () use ($event, &$false) {
    if (!evlog_log('events', 'transaction', $event)) $false++;
}, 200, 1000, fn() => evlog_flush(10000));

// The Quizlet-seed way: one HTTP POST per event (a new curl handle each time, as their client did).
$body = json_encode(['namespace' => 'events', 'type' => 'transaction', 'event' => $event]);
$post = function () use ($url, $body) {
    $ch = curl_init($url);
    curl_setopt_array($ch, [CURLOPT_POST => true, CURLOPT_POSTFIELDS => $body, CURLOPT_RETURNTRANSFER => true,
        CURLOPT_HTTPHEADER => ['Content-Type: application/json'], CURLOPT_TIMEOUT_MS => 1000]);
    curl_exec($ch);
    if (curl_getinfo($ch, CURLINFO_RESPONSE_CODE) !== 204) throw new RuntimeException('endpoint did not answer 204');
    curl_close($ch);
};
for ($i = 0; $i < 50; $i++) $post();
$curl = bench($post, 50, 20);

// Segment's file consumer: json_encode + fwrite of one line to a file kept open.
$fh = fopen($file, 'a');
$append = function () use ($fh, $event) { fwrite($fh, json_encode($event) . "\n"); };
$filew = bench($append, 200, 1000);
fclose($fh);

$s = evlog_stats();
printf("| way (same 6-field event) | median µs per call | p90 of rounds µs | vs evlog_log() |\n|---|---|---|---|\n");
foreach (['`evlog_log()` (queue; flush thread validating into the null sink)' => $evlog,
          'curl POST to a local HTTP endpoint (nginx `return 204`)' => $curl,
          'append a JSON line to a file (`json_encode` + `fwrite`)' => $filew] as $name => [$med, $p90]) {
    printf("| %s | %.3f | %.3f | %.1f× |\n", $name, $med, $p90, $med / $evlog[0]);
}
printf("\nevlog_log() returned false %d times; accepted %d, delivered %d, dropped %d\n", $false,
    $s['evlog_events_accepted_total'], $s['evlog_events_delivered_total'],
    array_sum(array_filter($s, fn($k) => str_starts_with($k, 'evlog_events_dropped_total'), ARRAY_FILTER_USE_KEY)));
