//! The configuration's unit tests: parsing, defaults, rules and environment overrides.

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_follow_design() {
    let c = Config::from_toml_str("").unwrap();
    assert_eq!(c.batch.max_rows, 500);
    assert_eq!(c.batch.max_bytes, ByteSize(1 << 20));
    assert_eq!(c.batch.max_age, Duration::from_secs(1));
    assert_eq!(c.sink.kind, SinkKind::File);
}

#[test]
fn parses_every_section() {
    let c = Config::from_toml_str(
        r#"
        [sink]
        kind = "file"
        [sink.file]
        dir = "/tmp/out"
        fsync = true
        [batch]
        max_rows = 100
        max_bytes = "512KiB"
        max_age = "250ms"
        [queue]
        capacity = 1000
        max_bytes = 1048576
        [retry]
        base = "50ms"
        cap = "5s"
        max_attempts = 3
        [spool]
        enabled = true
        dir = "/tmp/spool"
        max_bytes = "1GiB"
        [schemas]
        dir = "schemas"
        [routing]
        partitioning = "day_shard"
        [routing.tables."events.transaction"]
        dataset = "analytics"
        partitioning = "partitioned"
        "#,
    )
    .unwrap();
    assert_eq!(c.sink.file.dir, PathBuf::from("/tmp/out"));
    assert_eq!(c.batch.max_bytes, ByteSize(512 * 1024));
    assert_eq!(c.batch.max_age, Duration::from_millis(250));
    assert_eq!(c.retry.max_attempts, 3);
    assert_eq!(
        c.routing.tables["events.transaction"].partitioning,
        Some(Partitioning::Partitioned)
    );
}

#[test]
fn unknown_keys_and_bad_values_are_named() {
    let e = Config::from_toml_str("[batch]\nmax_rowz = 5\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("max_rowz"), "{e}");
    let e = Config::from_toml_str("[bacth]\n").unwrap_err().to_string();
    assert!(e.contains("bacth"), "{e}");
    let e = Config::from_toml_str("[batch]\nmax_age = \"soon\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("max_age") && e.contains("soon"), "{e}");
    let e = Config::from_toml_str("[batch]\nmax_rows = 0\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("batch.max_rows"), "{e}");
    let e = Config::from_toml_str("[batch]\nmax_bytes = \"11MB\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("batch.max_bytes"), "{e}");
    let e = Config::from_toml_str("[queue]\nmax_bytes = \"5 parsecs\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("parsecs"), "{e}");
    let e = Config::from_toml_str("[sink]\nkind = \"kafka\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("kafka"), "{e}");
    let e = Config::from_toml_str("[routing.tables.\"bad/ns.t\"]\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("routing.tables"), "{e}");
}

#[test]
fn env_overrides_keys() {
    let c = Config::from_toml_with_env(
        "[batch]\nmax_rows = 10\n",
        "test",
        env(&[
            ("EVLOG_BATCH_MAX_ROWS", "20"),
            ("EVLOG_SINK_FILE_DIR", "/tmp/x"),
            ("EVLOG_SINK_FILE_FSYNC", "yes"),
            ("EVLOG_BATCH_MAX_AGE", "2s"),
            ("EVLOG_QUEUE_MAX_BYTES", "2MiB"),
            ("EVLOG_SINK_FORWARD_GZIP", "off"),
            ("EVLOG_CONFIG", "ignored.toml"),
            // Read by `[[transforms]]` hash rules, not a key.
            ("EVLOG_TRANSFORM_KEY", "not-a-setting-0123456789"),
            ("PATH", "/bin"),
        ]),
    )
    .unwrap();
    assert_eq!(c.batch.max_rows, 20);
    assert_eq!(c.sink.file.dir, PathBuf::from("/tmp/x"));
    assert!(c.sink.file.fsync);
    assert_eq!(c.batch.max_age, Duration::from_secs(2));
    assert_eq!(c.queue.max_bytes, ByteSize(2 << 20));
    assert_eq!(c.sink.forward.gzip, Some(crate::sink::forward::Gzip::Off));
    assert_eq!(
        c.sink.forward.compression(),
        crate::sink::forward::Compression::None
    );
    let c = Config::from_toml_with_env(
        "",
        "test",
        env(&[("EVLOG_SINK_FORWARD_COMPRESSION", "GZIP")]),
    )
    .unwrap();
    assert_eq!(
        c.sink.forward.compression,
        Some(crate::sink::forward::Compression::Gzip)
    );

    let e = Config::from_toml_with_env("", "test", env(&[("EVLOG_BATCH_MAX_ROWZ", "1")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("EVLOG_BATCH_MAX_ROWZ"), "{e}");
    let e = Config::from_toml_with_env("", "test", env(&[("EVLOG_BATCH_MAX_ROWS", "many")]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("EVLOG_BATCH_MAX_ROWS") && e.contains("many"),
        "{e}"
    );
}

#[test]
fn env_key_paths_are_unambiguous() {
    let leaves = leaf_paths();
    let mut joined: Vec<_> = leaves.iter().map(|(p, _)| p.join("_")).collect();
    let n = joined.len();
    joined.sort();
    joined.dedup();
    assert_eq!(joined.len(), n, "two keys map to one EVLOG_ variable");
    assert!(joined.contains(&"sink_file_dir".to_string()));
}

#[test]
fn every_sink_rule_names_its_key() {
    // Each sink's rules live in its own `validate()`; the configuration reports them as before.
    for (toml, key, rule) in [
        ("[sink.file]\nmax_open_files = 0", "sink.file.max_open_files", "at least 1"),
        ("[sink.file]\ndead_letter_table = \"a b\"", "sink.file.dead_letter_table", ""),
        ("[sink]\nkind = \"bigquery\"", "sink.bigquery.project", "is required with sink.kind = \"bigquery\""),
        (
            "[sink]\nkind = \"bigquery\"\n[sink.bigquery]\nproject = \"p\"\nauth = \"service_account\"",
            "sink.bigquery.credentials",
            "is required with auth = \"service_account\"",
        ),
        (
            "[sink]\nkind = \"bigquery\"\n[sink.bigquery]\nproject = \"p\"\nauth = \"token\"",
            "sink.bigquery.token",
            "is required with auth = \"token\"",
        ),
        ("[sink.bigquery]\nmax_rows_per_request = 50001", "sink.bigquery.max_rows_per_request", "1..=50000"),
        ("[sink.bigquery]\nmax_bytes_per_request = \"11MB\"", "sink.bigquery.max_bytes_per_request", "request limit"),
        ("[sink.bigquery]\nworkers = 0", "sink.bigquery.workers", "1..=256"),
        ("[sink.bigquery]\ndead_letter_table = \"\"", "sink.bigquery.dead_letter_table", ""),
        ("[sink]\nkind = \"forward\"", "sink.forward.url", "is required with sink.kind = \"forward\""),
        ("[sink.forward]\nurl = \"ftp://x\"", "sink.forward.url", "scheme must be http or https"),
        ("[sink.forward]\nworkers = 257", "sink.forward.workers", "1..=256"),
        ("[sink.forward]\nmax_rows_per_request = 0", "sink.forward.max_rows_per_request", "at least 1"),
    ] {
        let e = Config::from_toml_str(toml).expect_err(toml).to_string();
        assert!(
            e.starts_with(&format!("invalid setting {key}: ")) && e.contains(rule),
            "{toml}: {e}"
        );
    }
    // A sink that is not selected is checked too, but its required keys are not required.
    Config::from_toml_str("[sink.bigquery]\nauth = \"token\"").expect("bigquery not selected");
}

/// `spool.enabled` and `spool.dir` default to absent (decided per destination) and can be set
/// from the environment like any key.
#[test]
fn the_spool_defaults_per_sink_kind_and_env_sets_it() {
    let forward = "[sink]\nkind = \"forward\"\n[sink.forward]\nurl = \"http://c:8080\"\n";
    let c = Config::from_toml_str(forward).unwrap();
    let (dir, private) = c.destination_spool("default").unwrap();
    assert!(private);
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("forward-") && name.len() == "forward-".len() + 16,
        "{name}"
    );
    assert_eq!(
        Config::default().destination_spool("default"),
        None,
        "file: none"
    );
    let c =
        Config::from_toml_with_env(forward, "test", env(&[("EVLOG_SPOOL_ENABLED", "0")])).unwrap();
    assert_eq!(c.destination_spool("default"), None);
    let c = Config::from_toml_with_env(
        "",
        "test",
        env(&[
            ("EVLOG_SPOOL_ENABLED", "1"),
            ("EVLOG_SPOOL_DIR", "/srv/spool"),
        ]),
    )
    .unwrap();
    assert_eq!(
        c.destination_spool("default"),
        Some((std::path::PathBuf::from("/srv/spool"), false))
    );
}
