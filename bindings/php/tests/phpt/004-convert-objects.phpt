--TEST--
evlog: objects (DateTimeInterface, JsonSerializable, Stringable) and values that cannot be logged
--INI--
evlog.file_dir={PWD}/out/004
evlog.schema_dir={PWD}/schemas
--FILE--
<?php
require __DIR__ . '/helpers.inc';
class Money implements JsonSerializable {
    function __construct(private int $cents) {}
    function jsonSerialize(): mixed { return ['cents' => $this->cents, 'at' => new DateTime('@0')]; }
}
class Sku { function __toString(): string { return 'SKU-1'; } }
class Opaque { public $a = 1; }
class Throws implements JsonSerializable { function jsonSerialize(): mixed { throw new RuntimeException('boom'); } }
var_dump(evlog_log('t', 'any', [
    'dt' => new DateTime('2026-11-22 10:00:00.123456', new DateTimeZone('Europe/Paris')),
    'dti' => new DateTimeImmutable('1969-12-31T23:59:58.5Z'),
    'money' => new Money(999),
    'sku' => new Sku,
]));
var_dump(evlog_flush(5000));
echo evlog_other_texts('t', 'any')[0], "\n";
expect_exception(fn() => evlog_log('t', 'any', ['o' => ['x' => new Opaque]]));
expect_exception(fn() => evlog_log('t', 'any', ['fn' => fn() => 1]));
expect_exception(fn() => evlog_log('t', 'any', ['list' => [1, STDIN]]));
expect_exception(fn() => evlog_log('t', 'any', ['bin' => "ok\xC3\x28"]));
expect_exception(fn() => evlog_log('t', 'any', ["k\xFF" => 1]));
try { evlog_log('t', 'any', ['t' => new Throws]); } catch (Throwable $e) { echo get_class($e), ': ', $e->getMessage(), "\n"; }
print_r(array_intersect_key(evlog_stats(), ['evlog_events_accepted_total' => 1]));
?>
--CLEAN--
<?php require __DIR__ . '/helpers.inc'; evlog_rm(__DIR__ . '/out/004'); ?>
--EXPECT--
bool(true)
bool(true)
{"dt":"2026-11-22T09:00:00.123456Z","dti":"1969-12-31T23:59:58.500000Z","money":{"cents":999,"at":"1970-01-01T00:00:00.000000Z"},"sku":"SKU-1"}
Evlog\Exception: event.o.x: an object of class Opaque cannot be logged (supported: DateTimeInterface, JsonSerializable, Stringable, stdClass)
Evlog\Exception: event.fn: an object of class Closure cannot be logged (supported: DateTimeInterface, JsonSerializable, Stringable, stdClass)
Evlog\Exception: event.list[1]: a resource cannot be logged (convert it to a string or number first)
Evlog\Exception: event.bin: string is not valid UTF-8 (invalid byte at offset 2); BigQuery stores only UTF-8 text, convert it (e.g. mb_convert_encoding) or base64-encode binary data
Evlog\Exception: event.k�: key string is not valid UTF-8 (invalid byte at offset 1); BigQuery stores only UTF-8 text, convert it (e.g. mb_convert_encoding) or base64-encode binary data
RuntimeException: boom
Array
(
    [evlog_events_accepted_total] => 1
)
