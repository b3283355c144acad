<?php
// Benchmark page: the same work with or without 10 evlog_log() calls (?log=1); ?json=1 instead
// json_encode()s each event and keeps only its length (no I/O): what serializing the events in
// PHP alone costs, the reference any design that serializes on the page's thread pays. The loop's own
// wall time, ns, is sent back in X-Loop-Ns (both kinds): what the calls add to the page measured
// inside it, free of nginx's and the load generator's noise (fpm_cpu.sh, page_ns.lua).
$log = isset($_GET['log']);
$json = isset($_GET['json']);
$rid = bin2hex(random_bytes(8));
$sum = 0;
$t0 = hrtime(true);
for ($i = 0; $i < 10; $i++) {
    $event = ['req' => $rid, 'i' => $i, 'path' => '/bench', 'ua' => 'wrk', 'ms' => microtime(true), 'ok' => true];
    if ($log) {
        evlog_log('web', 'hit', $event);
    } elseif ($json) {
        $sum += strlen(json_encode($event));
    } else {
        $sum += count($event);
    }
}
header('X-Loop-Ns: ' . (hrtime(true) - $t0));
echo "ok\n";
