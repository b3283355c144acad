<?php
// A bare loop for profilers (callgrind, perf): N calls of one kind, nothing else.
//   php -d extension=... -d evlog.mode='"null"' loop.php N [log|noop]
//   log   evlog_log() of bench.sh's 6-field event, then evlog_flush() (the flush thread's share
//         is then complete before the process exits)
//   noop  the same loop calling is_array() on the event instead (the loop's own cost)
$n = (int) ($argv[1] ?? 100000);
$what = $argv[2] ?? 'log';
$event = ['user_id' => 42, 'amount' => '9.99', 'currency' => 'EUR', 'coupon' => 'XMAS', 'ok' => true, 'ms' => 1700000000.123];
$false = 0;
if ($what === 'log') {
    for ($i = 0; $i < $n; $i++) if (!evlog_log('events', 'transaction', $event)) $false++;
    evlog_flush(60000);
    $s = evlog_stats();
    fprintf(STDERR, "loop: %d evlog_log() calls, %d false, delivered %d\n", $n, $false, $s['evlog_events_delivered_total']);
} else {
    for ($i = 0; $i < $n; $i++) if (!is_array($event)) $false++;
    fprintf(STDERR, "loop: %d is_array() calls\n", $n);
}
