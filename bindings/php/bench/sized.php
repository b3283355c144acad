<?php
// Pages of 10 evlog_log() calls with events of a given size, paced like a busy php-fpm worker:
// the 10 calls timed together (hrtime) in each of PAGES pages, GAP_US µs apart. One line:
// "bytes B calls_p50 X calls_p99 Y flush_us_per_event F flush_wakes W" (µs for the page's 10
// calls; B: the body's JSON bytes; F, W: the flush thread's CPU per event and its voluntary
// context switches, about its wake-ups).
//   php -d extension=... -d evlog.mode='"null"' sized.php PAD [PAGES] [GAP_US]
$pad = str_repeat('x', (int)$argv[1]);
$pages = (int)($argv[2] ?? 2000);
$gap = (int)($argv[3] ?? 500);
$per = [];
$bytes = 0;
for ($p = 0; $p < $pages; $p++) {
    $events = [];
    for ($i = 0; $i < 10; $i++) {
        $events[] = ['user_id' => $p, 'amount' => '9.99', 'currency' => 'EUR', 'coupon' => $pad, 'ok' => true, 'ms' => microtime(true)];
    }
    $t = hrtime(true);
    foreach ($events as $e) evlog_log('events', 'transaction', $e);
    $per[] = (hrtime(true) - $t) / 1000;
    if ($p === 0) $bytes = strlen(json_encode($events[0]));
    usleep($gap);
}
// The other thread (evlog's flush thread): its CPU time and how often it woke, before the last
// flush (the same work for every build).
$flush_ns = 0;
$wakes = 0;
foreach (scandir('/proc/self/task') as $tid) {
    if ($tid === '.' || $tid === '..' || (int)$tid === getmypid()) continue;
    $flush_ns += (int)explode(' ', file_get_contents("/proc/self/task/$tid/schedstat"))[0];
    preg_match('/^voluntary_ctxt_switches:\s+(\d+)/m', file_get_contents("/proc/self/task/$tid/status"), $m);
    $wakes += (int)$m[1];
}
evlog_flush(10000);
sort($per);
printf("bytes %d calls_p50 %.2f calls_p99 %.2f flush_us_per_event %.3f flush_wakes %d\n", $bytes,
    $per[intdiv(count($per), 2)], $per[intdiv(count($per) * 99, 100)], $flush_ns / 1000 / ($pages * 10), $wakes);
