--TEST--
evlog: MSHUTDOWN delivers what is queued; a forked child logs through its own pipeline, nothing twice
--SKIPIF--
<?php if (!function_exists('pcntl_fork') || !getenv('PHPT_EVLOG_EXT')) die('skip needs pcntl and PHPT_EVLOG_EXT'); ?>
--INI--
evlog.file_dir={PWD}/out/010
evlog.schema_dir={PWD}/schemas
evlog.batch_max_age=1h
--FILE--
<?php
require __DIR__ . '/helpers.inc';
$dir = ini_get('evlog.file_dir');
// A separate process logs 500 events with a 1h batch age and exits without flushing:
// only MSHUTDOWN can deliver them.
$cmd = escapeshellarg(PHP_BINARY) . ' -n -d extension=' . escapeshellarg(getenv('PHPT_EVLOG_EXT'))
    . ' -d evlog.file_dir=' . escapeshellarg($dir) . ' -d evlog.schema_dir=' . escapeshellarg(ini_get('evlog.schema_dir'))
    . ' -d evlog.batch_max_age=1h -r ' . escapeshellarg('for ($i = 0; $i < 500; $i++) evlog_log("t", "any", ["src" => "sub", "i" => $i]); echo evlog_stats()["evlog_events_delivered_total"];');
echo 'delivered before exit: ', shell_exec($cmd), "\n";
echo 'rows after exit: ', count(array_filter(evlog_others('t', 'any'), fn($o) => $o['src'] === 'sub')), "\n";

// Fork: the parent logs before and after; the child logs its own events and exits.
evlog_log('t', 'any', ['src' => 'parent', 'i' => 0]);
$pid = pcntl_fork();
if ($pid === 0) {
    for ($i = 0; $i < 50; $i++) evlog_log('t', 'any', ['src' => 'child', 'i' => $i]);
    $s = evlog_stats();
    echo 'child accepted: ', $s['evlog_events_accepted_total'], ', pid differs: ', var_export($s['pid'] !== posix_getppid(), true), "\n";
    exit(0); // MSHUTDOWN of the child delivers its 50
}
pcntl_waitpid($pid, $status);
echo 'child exit: ', pcntl_wexitstatus($status), "\n";
evlog_log('t', 'any', ['src' => 'parent', 'i' => 1]);
var_dump(evlog_flush(5000));
$count = [];
foreach (evlog_others('t', 'any') as $o) { $count[$o['src']][$o['i']] = ($count[$o['src']][$o['i']] ?? 0) + 1; }
ksort($count);
foreach ($count as $src => $seen) echo $src, ': ', count($seen), ' distinct, max copies ', max($seen), "\n";
echo 'parent accepted: ', evlog_stats()['evlog_events_accepted_total'], "\n";
?>
--CLEAN--
<?php require __DIR__ . '/helpers.inc'; evlog_rm(__DIR__ . '/out/010'); ?>
--EXPECT--
delivered before exit: 0
rows after exit: 500
child accepted: 50, pid differs: true
child exit: 0
bool(true)
child: 50 distinct, max copies 1
parent: 2 distinct, max copies 1
sub: 500 distinct, max copies 1
parent accepted: 2
