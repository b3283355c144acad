<?php
// memory.sh: ?n=N evlog_log() calls of the bench page's event, then evlog_flush(); prints the
// counters as JSON (?n=1 is "the first event").
$n = (int) ($_GET['n'] ?? 1);
$false = 0;
for ($i = 0; $i < $n; $i++) {
    $event = ['req' => 'mem', 'i' => $i, 'path' => '/burst', 'ua' => 'curl', 'ms' => microtime(true), 'ok' => true];
    if (!evlog_log('web', 'hit', $event)) $false++;
}
$flushed = isset($_GET['flush']) ? evlog_flush(60000) : null;
echo json_encode(['pid' => getmypid(), 'false' => $false, 'flushed' => $flushed] + evlog_stats()), "\n";
