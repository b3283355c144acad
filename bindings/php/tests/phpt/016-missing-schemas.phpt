--TEST--
evlog: a schema directory that cannot be read is an Evlog\Exception naming the path, the fix and the php.ini directive
--SKIPIF--
<?php if (!getenv('PHPT_EVLOG_EXT')) die('skip needs PHPT_EVLOG_EXT'); ?>
--INI--
evlog.mode="null"
evlog.schema_dir=/nonexistent/evlog-schemas
--FILE--
<?php
require __DIR__ . '/helpers.inc';
try { evlog_log('events', 'transaction', []); echo "no exception\n"; }
catch (Evlog\Exception $e) {
    $m = $e->getMessage();
    foreach (['/nonexistent/evlog-schemas', 'No such file or directory', 'create it', 'php.ini: evlog.schema_dir'] as $part) {
        echo $part, ': ', str_contains($m, $part) ? 'yes' : "no ($m)", "\n";
    }
}
?>
--EXPECT--
/nonexistent/evlog-schemas: yes
No such file or directory: yes
create it: yes
php.ini: evlog.schema_dir: yes
