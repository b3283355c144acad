--TEST--
evlog: evlog.forward_api_key is sent as Authorization: Bearer, evlog.forward_gzip=0 with evlog.forward_format=rows sends plain JSON to <url>/v1/rows
--SKIPIF--
<?php if (!getenv('PHPT_EVLOG_EXT')) die('skip needs PHPT_EVLOG_EXT'); ?>
--FILE--
<?php
require __DIR__ . '/helpers.inc';
// A recording HTTP server in this process: it takes the SDK's first request and answers it.
$srv = stream_socket_server('tcp://127.0.0.1:0', $errno, $errstr) ?: exit("listen: $errstr\n");
$url = 'http://' . stream_socket_get_name($srv, false) . '/base/';
$argv = [PHP_BINARY, '-n', '-d', 'extension=' . getenv('PHPT_EVLOG_EXT'),
    '-d', 'evlog.mode=forward', '-d', "evlog.forward_url=$url", '-d', 'evlog.forward_api_key=s3cret-key',
    '-d', 'evlog.forward_gzip=0', '-d', 'evlog.forward_format=rows', '-d', 'evlog.retry_max_attempts=1', '-d', 'evlog.batch_max_age=20ms',
    // No spool: this server's answer is not a collector's, and the rows would be kept on disk.
    '-d', 'evlog.spool_enabled=0',
    '-d', 'evlog.schema_dir=' . __DIR__ . '/schemas',
    '-r', 'var_dump(evlog_log("t", "any", ["k" => 1], ["id" => "ak-1"])); evlog_flush(10000);'];
$sdk = proc_open($argv, [1 => ['pipe', 'w'], 2 => ['redirect', 1]], $pipes);
$conn = stream_socket_accept($srv, 30) ?: exit("no request from the SDK within 30s\n");
stream_set_timeout($conn, 10);
$head = '';
while (!str_contains($head, "\r\n\r\n") && ($line = fgets($conn)) !== false) $head .= $line;
preg_match('/^content-length:\s*(\d+)/mi', $head, $m);
$body = '';
while (strlen($body) < (int) ($m[1] ?? 0) && ($chunk = fread($conn, 65536)) !== false && $chunk !== '') $body .= $chunk;
fwrite($conn, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 14\r\nConnection: close\r\n\r\n{\"accepted\":1}");
fclose($conn);
fclose($srv);
echo stream_get_contents($pipes[1]);
echo 'exit ', proc_close($sdk), "\n";
$headers = [];
foreach (array_slice(explode("\r\n", trim($head)), 1) as $h) { [$k, $v] = explode(':', $h, 2); $headers[strtolower($k)] = trim($v); }
echo strtok($head, "\r\n"), "\n";
echo 'authorization: ', $headers['authorization'] ?? '(none)', "\n";
echo 'content-encoding: ', $headers['content-encoding'] ?? '(none)', "\n";
echo 'body is JSON with the event id: ', var_export(json_decode($body) !== null && str_contains($body, '"ak-1"'), true), "\n";
?>
--EXPECT--
bool(true)
exit 0
POST /base/v1/rows HTTP/1.1
authorization: Bearer s3cret-key
content-encoding: (none)
body is JSON with the event id: true
