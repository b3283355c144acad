--TEST--
evlog: evlog_log()'s arguments: count, types, references, spread, named, reflection (its handler is written out, not generated)
--INI--
evlog.file_dir={PWD}/out/019
evlog.schema_dir={PWD}/schemas
--FILE--
<?php
require __DIR__ . '/helpers.inc';
$cases = [
    fn() => evlog_log('t', 'any'),
    fn() => evlog_log('t', 'any', [], null, 5),
    fn() => evlog_log(1, 'any', []),
    fn() => evlog_log('t', 2, []),
    fn() => evlog_log('t', 'any', 'x'),
    fn() => evlog_log("t\xff", 'any', []),
    fn() => evlog_log('t', 'any', ['n' => 1], 5),            // a non-array $options reads as null
    fn() => evlog_log('t', 'any', ['n' => 2], null),
    fn() => evlog_log(...['t', 'any', ['n' => 3]]),
    fn() => evlog_log(event: ['n' => 4], type: 'any', namespace: 't'),
    fn() => evlog_log('t', 'any', ['n' => 5], ['id' => 'id-5']),
    fn() => evlog_log('t', 'any', ['n' => 6], nope: 1),
];
foreach ($cases as $i => $f) {
    try { var_dump($f()); } catch (Throwable $e) { echo $i, ' ', get_class($e), ': ', $e->getMessage(), "\n"; }
}
$ns = 't'; $nsr = &$ns; $ev = ['n' => 7]; $evr = &$ev;
var_dump(evlog_log($nsr, 'any', $evr));
echo new ReflectionFunction('evlog_log');
var_dump(evlog_flush(5000));
foreach (evlog_rows('t', 'any') as $r) echo $r['event_id'] === 'id-5' ? 'id-5 ' : '', $r['other'], "\n";
?>
--CLEAN--
<?php require __DIR__ . '/helpers.inc'; evlog_rm(__DIR__ . '/out/019'); ?>
--EXPECT--
0 ArgumentCountError: evlog_log() expects at least 3 arguments, 2 given
1 ArgumentCountError: evlog_log() expects at most 4 arguments, 5 given
2 Exception: Invalid value given for argument `namespace`.
3 Exception: Invalid value given for argument `r#type`.
4 Exception: Invalid value given for argument `event`.
5 Exception: Invalid value given for argument `namespace`.
bool(true)
bool(true)
bool(true)
bool(true)
bool(true)
11 Error: Unknown named parameter $nope
bool(true)
Function [ <internal:evlog> function evlog_log ] {

  - Parameters [4] {
    Parameter #0 [ <required> string $namespace ]
    Parameter #1 [ <required> string $type ]
    Parameter #2 [ <required> array $event ]
    Parameter #3 [ <optional> ?array $options = <default> ]
  }
  - Return [ bool ]
}
bool(true)
{"n":1}
{"n":2}
{"n":3}
{"n":4}
id-5 {"n":5}
{"n":7}
