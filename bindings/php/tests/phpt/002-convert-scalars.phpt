--TEST--
evlog: scalar conversions (null, bool, int, float incl. NaN/INF, strings with escapes)
--INI--
evlog.file_dir={PWD}/out/002
evlog.schema_dir={PWD}/schemas
--FILE--
<?php
require __DIR__ . '/helpers.inc';
var_dump(evlog_log('t', 'any', [
    'null' => null, 't' => true, 'f' => false,
    'int' => 42, 'neg' => -7, 'max' => PHP_INT_MAX, 'min' => PHP_INT_MIN,
    'float' => 1.5, 'tiny' => 1e-300, 'huge' => 1e300, 'negzero' => -0.0, 'third' => 1/3,
    'nan' => NAN, 'inf' => INF, 'ninf' => -INF,
    'empty' => '', 'esc' => "q\" b\\ n\n t\t c\x01 é 日本 🎉",
    // Beyond PHP_INT_MAX PHP itself has a float; `other` keeps the binding's shortest
    // round-trip text of it, digit for digit.
    'over' => PHP_INT_MAX + 1,
]));
var_dump(evlog_flush(5000));
$o = evlog_others('t', 'any')[0];
var_dump($o['null'], $o['t'], $o['f'], $o['int'], $o['neg'], $o['max'] === PHP_INT_MAX, $o['min'] === PHP_INT_MIN);
var_dump($o['float'], $o['tiny'], $o['huge'], $o['third'] === 1/3, $o['nan'], $o['inf'], $o['ninf']);
var_dump($o['empty'], $o['esc'] === "q\" b\\ n\n t\t c\x01 é 日本 🎉", $o['over'] === PHP_INT_MAX + 1);
echo evlog_other_texts('t', 'any')[0], "\n";
?>
--CLEAN--
<?php require __DIR__ . '/helpers.inc'; evlog_rm(__DIR__ . '/out/002'); ?>
--EXPECT--
bool(true)
bool(true)
NULL
bool(true)
bool(false)
int(42)
int(-7)
bool(true)
bool(true)
float(1.5)
float(1.0E-300)
float(1.0E+300)
bool(true)
string(3) "NaN"
string(8) "Infinity"
string(9) "-Infinity"
string(0) ""
bool(true)
bool(true)
{"null":null,"t":true,"f":false,"int":42,"neg":-7,"max":9223372036854775807,"min":-9223372036854775808,"float":1.5,"tiny":1e-300,"huge":1e300,"negzero":-0.0,"third":0.3333333333333333,"nan":"NaN","inf":"Infinity","ninf":"-Infinity","empty":"","esc":"q\" b\\ n\n t\t c\u0001 é 日本 🎉","over":9.223372036854776e18}
