<?php
// Benchmark page: the same work with or without 10 evlog_log() calls (?log=1).
$log = isset($_GET['log']);
$rid = bin2hex(random_bytes(8));
$sum = 0;
for ($i = 0; $i < 10; $i++) {
    $event = ['req' => $rid, 'i' => $i, 'path' => '/bench', 'ua' => 'wrk', 'ms' => microtime(true), 'ok' => true];
    if ($log) {
        evlog_log('web', 'hit', $event);
    } else {
        $sum += count($event);
    }
}
echo "ok\n";
