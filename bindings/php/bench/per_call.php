<?php
// µs per evlog_log() in a loop (log_bench.php's method without its curl row, so no endpoint is
// needed): median and p90 of 200 rounds of 1000 calls, queue drained (untimed) between rounds;
// beside it json_encode + fwrite of a line. One line: "evlog_log MED P90 json_fwrite MED P90".
//   php -d extension=... -d evlog.mode='"null"' per_call.php FILE
$file = $argv[1];
$event = ['user_id' => 42, 'amount' => '9.99', 'currency' => 'EUR', 'coupon' => 'XMAS', 'ok' => true, 'ms' => 1700000000.123];
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
for ($i = 0; $i < 5000; $i++) evlog_log('events', 'transaction', $event);
evlog_flush(10000);
$evlog = bench(function () use ($event) { evlog_log('events', 'transaction', $event); }, 200, 1000, fn() => evlog_flush(10000));
$fh = fopen($file, 'a');
$filew = bench(function () use ($fh, $event) { fwrite($fh, json_encode($event) . "\n"); }, 200, 1000);
printf("evlog_log %.3f %.3f json_fwrite %.3f %.3f\n", $evlog[0], $evlog[1], $filew[0], $filew[1]);
