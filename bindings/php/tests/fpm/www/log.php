<?php
// The fpm test page: 10 events per request, each with a unique id "<request>-<i>".
$rid = bin2hex(random_bytes(8));
$ok = 0;
for ($i = 0; $i < 10; $i++) {
    $ok += (int) evlog_log('web', 'hit', [
        'req' => $rid, 'i' => $i, 'path' => $_SERVER['REQUEST_URI'] ?? '',
        'ua' => $_SERVER['HTTP_USER_AGENT'] ?? '', 'ms' => microtime(true), 'ok' => true,
    ], ['id' => "$rid-$i"]);
}
// This worker's counters so far; the last write per pid is its final state (reconciled by the test).
if (isset($_GET['stats'])) {
    file_put_contents(ini_get('evlog.file_dir') . '/../stats/' . getmypid() . '.json', json_encode(evlog_stats()));
}
echo $ok === 10 ? "ok $rid\n" : "FAILED $rid\n";
