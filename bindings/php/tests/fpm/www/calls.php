<?php
// Benchmark page: bench.php's loop with each of its 10 calls timed on its own (hrtime, ns),
// sent back in X-Calls as a comma-separated list (bench/call_index.sh). ?m=thrash works through
// 4 MiB between the 5th and 6th calls (evicting the CPU caches), ?m=sleep sleeps 2 ms there:
// what a call costs after other work, against one right after the previous call.
$log = isset($_GET['log']);
$mode = $_GET['m'] ?? '';
$rid = bin2hex(random_bytes(8));
$sum = 0;
$ts = [];
for ($i = 0; $i < 10; $i++) {
    if ($i == 5 && $mode == 'thrash') {
        $s = str_repeat('x', 4 << 20);
        $sum += strlen(md5($s));
        unset($s);
    }
    if ($i == 5 && $mode == 'sleep') {
        usleep(2000);
    }
    $event = ['req' => $rid, 'i' => $i, 'path' => '/bench', 'ua' => 'wrk', 'ms' => microtime(true), 'ok' => true];
    $t0 = hrtime(true);
    if ($log) {
        evlog_log('web', 'hit', $event);
    } else {
        $sum += count($event);
    }
    $ts[] = hrtime(true) - $t0;
}
header('X-Calls: ' . implode(',', $ts));
echo "ok\n";
