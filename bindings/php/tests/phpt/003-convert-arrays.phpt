--TEST--
evlog: arrays (lists, maps, mixed keys, holes, empty, nesting), stdClass, top-level list, depth limit
--INI--
evlog.file_dir={PWD}/out/003
evlog.schema_dir={PWD}/schemas
--FILE--
<?php
require __DIR__ . '/helpers.inc';
$holes = [0 => 'a', 1 => 'b', 2 => 'c']; unset($holes[1]);
$reordered = [1 => 'b', 0 => 'a'];
$std = new stdClass; $std->x = 1; $std->y = ['z' => true];
var_dump(evlog_log('t', 'any', [
    'list' => [1, 'two', 3.0, null],
    'map' => ['a' => 1, 'b' => ['c' => 'd']],
    'intkeys' => [5 => 'five', 7 => 'seven'],
    'mixed' => [0 => 'zero', 'k' => 'v'],
    'holes' => $holes,
    'reordered' => $reordered,
    'empty' => [],
    'nested' => [[1, [2, [3]]], ['k' => [[]]]],
    'std' => $std,
    'ref' => &$std->x,
]));
var_dump(evlog_log('t', 'any', ['first', 'second']));
var_dump(evlog_flush(5000));
foreach (evlog_other_texts('t', 'any') as $t) echo $t, "\n";

$deep = 'leaf';
for ($i = 0; $i < 70; $i++) $deep = ['d' => $deep];
expect_exception(fn() => evlog_log('t', 'any', ['deep' => $deep]));
$ok = 'leaf';
for ($i = 0; $i < 60; $i++) $ok = [$ok];
var_dump(evlog_log('t', 'any', ['ok' => $ok]));
$self = []; $self['me'] = &$self;
expect_exception(fn() => evlog_log('t', 'any', ['cycle' => $self]));
?>
--CLEAN--
<?php require __DIR__ . '/helpers.inc'; evlog_rm(__DIR__ . '/out/003'); ?>
--EXPECTF--
bool(true)
bool(true)
bool(true)
{"list":[1,"two",3.0,null],"map":{"a":1,"b":{"c":"d"}},"intkeys":{"5":"five","7":"seven"},"mixed":{"0":"zero","k":"v"},"holes":{"0":"a","2":"c"},"reordered":{"1":"b","0":"a"},"empty":[],"nested":[[1,[2,[3]]],{"k":[[]]}],"std":{"x":1,"y":{"z":true}},"ref":1}
{"0":"first","1":"second"}
Evlog\Exception: event.deep.d.d.d%s: nested deeper than 64 levels
bool(true)
Evlog\Exception: event.cycle.me%s: nested deeper than 64 levels
