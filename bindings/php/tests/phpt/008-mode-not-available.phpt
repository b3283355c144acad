--TEST--
evlog: evlog.mode=collector is refused with a clear message until the collector sink exists
--INI--
evlog.mode=collector
evlog.collector_url=http://127.0.0.1:9/
--FILE--
<?php
require __DIR__ . '/helpers.inc';
expect_exception(fn() => evlog_log('t', 'any', []));
echo ini_get('evlog.collector_url'), "\n";
?>
--EXPECT--
Evlog\Exception: evlog.mode = collector: the collector sink is not available yet in this evlog build; use file or null
http://127.0.0.1:9/
