--TEST--
evlog: conversion reads PHP's tables and strings in place: packed and hash arrays with holes, mixed keys, lists in a hash, strings flagged valid UTF-8 or not, tables changed by jsonSerialize() during the walk
--INI--
evlog.file_dir={PWD}/out/018
evlog.schema_dir={PWD}/schemas
--FILE--
<?php
require __DIR__ . '/helpers.inc';
$flags = JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE;

// Packed arrays (keys are positions) with holes: an object unless only trailing slots are gone.
$packed = range(0, 999); unset($packed[500]);
$trailing = [10, 11, 12, 13]; unset($packed[999], $trailing[3], $trailing[2]);
// Hash arrays (any string key) with deleted buckets, integer and string keys mixed.
$hash = [];
for ($i = 0; $i < 300; $i++) $hash["k$i"] = $i % 2 ? "v$i" : $i;
for ($i = 0; $i < 300; $i += 3) unset($hash["k$i"]);
$mixed = [5 => 'five', 'k' => 'v', 0 => 'zero', '7' => 'seven', -3 => 'neg', '08' => 'str key'];
// A hash table whose keys are 0..n-1 in order is a list.
$hlist = ['x' => 1]; unset($hlist['x']); $hlist[] = 'a'; $hlist[] = 'b';
$nested = ['l' => [[1, 2], ['a' => [3, ['b' => $trailing]]]], 'h' => ['0' => $mixed]];
$event = compact('packed', 'trailing', 'hash', 'mixed', 'hlist', 'nested');
var_dump(evlog_log('t', 'any', $event));
var_dump(evlog_flush(5000));
$text = evlog_other_texts('t', 'any')[0];
var_dump($text === json_encode($event, $flags));
echo json_encode(['trailing' => $trailing, 'mixed' => $mixed, 'hlist' => $hlist, 'nested' => $nested], $flags), "\n";

// Strings PHP flagged valid UTF-8 (PCRE with /u checks, then sets IS_STR_VALID_UTF8 on
// non-interned strings) are written unchecked; every other string is checked.
$flagged = str_repeat("é\"\\\n\x01 日本 🎉 ", 3) . PHP_VERSION;
var_dump(preg_match('/./u', $flagged));
var_dump(evlog_log('t', 'any', ['flagged' => $flagged, $flagged => 'as key']));
$changed = str_repeat('ok', 4) . PHP_VERSION;
var_dump(preg_match('/./u', $changed));
$changed .= "\xE9"; // PHP clears the flag when the bytes change
expect_exception(fn() => evlog_log('t', 'any', ['changed' => $changed]));
$bad = str_repeat('abcdefgh', 3) . "\xF0\x9F\x8E" . PHP_VERSION; // truncated after whole words
var_dump(preg_match('/./u', $bad)); // false: PCRE refuses it and flags nothing
expect_exception(fn() => evlog_log('t', 'any', ['bad' => $bad]));
var_dump(evlog_flush(5000));
$rows = evlog_others('t', 'any');
var_dump(count($rows), $rows[1]['flagged'] === $flagged, $rows[1][$flagged]);

// User code run during the walk drops or changes the table being read: the walk holds it.
class DropsInner implements JsonSerializable {
    function jsonSerialize(): mixed { global $inner; $inner = null; return 'dropped'; }
}
class AddsProperties implements JsonSerializable {
    function __construct(private stdClass $o) {}
    function jsonSerialize(): mixed { for ($i = 0; $i < 100; $i++) $this->o->{"p$i"} = $i; return 'added'; }
}
$inner = [new DropsInner, 'after', str_repeat('x', 3)];
$o = new stdClass; $o->a = new AddsProperties($o); $o->b = 'b';
$ev = ['inner' => &$inner, 'o' => $o];
var_dump(evlog_log('t', 'any', $ev));
var_dump($inner, count(get_object_vars($o)));
var_dump(evlog_flush(5000));
echo evlog_other_texts('t', 'any')[2], "\n";
?>
--CLEAN--
<?php require __DIR__ . '/helpers.inc'; evlog_rm(__DIR__ . '/out/018'); ?>
--EXPECTF--
bool(true)
bool(true)
bool(true)
{"trailing":[10,11],"mixed":{"5":"five","k":"v","0":"zero","7":"seven","-3":"neg","08":"str key"},"hlist":["a","b"],"nested":{"l":[[1,2],{"a":[3,{"b":[10,11]}]}],"h":[{"5":"five","k":"v","0":"zero","7":"seven","-3":"neg","08":"str key"}]}}
int(1)
bool(true)
int(1)
Evlog\Exception: event.changed: string is not valid UTF-8 (invalid byte at offset %d); BigQuery stores only UTF-8 text, convert it (e.g. mb_convert_encoding) or base64-encode binary data
bool(false)
Evlog\Exception: event.bad: string is not valid UTF-8 (invalid byte at offset 24); BigQuery stores only UTF-8 text, convert it (e.g. mb_convert_encoding) or base64-encode binary data
bool(true)
int(2)
bool(true)
string(6) "as key"
bool(true)
NULL
int(102)
bool(true)
{"inner":["dropped","after","xxx"],"o":{"a":"added","b":"b"}}
