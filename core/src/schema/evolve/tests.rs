use serde_json::json;

use super::*;

fn reg(tables: &[(&str, &str, serde_json::Value)]) -> SchemaRegistry {
    let mut r = SchemaRegistry::empty();
    for (ns, ty, fields) in tables {
        r.insert(TableSchema::from_json_str(ns, ty, &fields.to_string(), "test").unwrap());
    }
    r
}

fn one(fields: serde_json::Value) -> SchemaRegistry {
    reg(&[("events", "click", fields)])
}

fn refused(old: serde_json::Value, new: serde_json::Value) -> String {
    check_evolution(&one(old), &one(new))
        .expect_err("refused")
        .to_string()
}

#[test]
fn identical_registries_have_no_changes() {
    let a = one(json!([{"name": "a", "type": "STRING"}]));
    assert_eq!(check_evolution(&a, &a.clone()).unwrap(), vec![]);
}

#[test]
fn new_nullable_and_repeated_columns_are_added_in_records_too() {
    let old = one(json!([
        {"name": "a", "type": "STRING", "mode": "REQUIRED"},
        {"name": "cart", "type": "RECORD", "fields": [{"name": "n", "type": "INT64"}]}
    ]));
    let new = one(json!([
        {"name": "A", "type": "STRING", "mode": "NULLABLE", "description": "now optional"},
        {"name": "coupon", "type": "STRING"},
        {"name": "cart", "type": "RECORD", "fields": [
            {"name": "n", "type": "INTEGER"},
            {"name": "tags", "type": "STRING", "mode": "REPEATED"}
        ]}
    ]));
    let changes = check_evolution(&old, &new).unwrap();
    let t = "events.click".to_string();
    assert_eq!(
        changes,
        vec![
            Change::ColumnRelaxed {
                table: t.clone(),
                column: "A".into()
            },
            Change::ColumnAdded {
                table: t.clone(),
                column: "coupon".into()
            },
            Change::ColumnAdded {
                table: t,
                column: "cart.tags".into()
            },
        ]
    );
    assert!(changes.iter().all(Change::needs_patch));
}

#[test]
fn tables_added_and_removed_are_accepted_and_reported() {
    let f = json!([{"name": "a", "type": "STRING"}]);
    let old = reg(&[("events", "gone", f.clone()), ("events", "kept", f.clone())]);
    let new = reg(&[("events", "kept", f.clone()), ("shop", "order", f)]);
    let changes = check_evolution(&old, &new).unwrap();
    assert_eq!(
        changes,
        vec![
            Change::TableAdded("shop.order".into()),
            Change::TableRemoved("events.gone".into())
        ]
    );
    assert!(!changes.iter().any(Change::needs_patch));
}

#[test]
fn a_new_required_column_is_refused_naming_table_column_and_rule() {
    let e = refused(
        json!([{"name": "a", "type": "STRING"}]),
        json!([{"name": "a", "type": "STRING"}, {"name": "b", "type": "INT64", "mode": "REQUIRED"}]),
    );
    assert!(e.starts_with("events.click: column \"b\": "), "{e}");
    assert!(e.contains("NULLABLE or REPEATED"), "{e}");
}

#[test]
fn a_new_required_subfield_is_refused_with_its_path() {
    let e = refused(
        json!([{"name": "r", "type": "RECORD", "fields": [{"name": "x", "type": "STRING"}]}]),
        json!([{"name": "r", "type": "RECORD", "fields": [
            {"name": "x", "type": "STRING"}, {"name": "y", "type": "STRING", "mode": "REQUIRED"}]}]),
    );
    assert!(e.contains("column \"r.y\""), "{e}");
}

#[test]
fn a_type_change_is_refused() {
    let e = refused(
        json!([{"name": "amount", "type": "STRING"}]),
        json!([{"name": "amount", "type": "NUMERIC"}]),
    );
    assert!(e.contains("column \"amount\""), "{e}");
    assert!(e.contains("from STRING to NUMERIC"), "{e}");
}

#[test]
fn a_removed_column_is_refused() {
    let e = refused(
        json!([{"name": "a", "type": "STRING"}, {"name": "b", "type": "STRING"}]),
        json!([{"name": "a", "type": "STRING"}]),
    );
    assert!(e.contains("column \"b\""), "{e}");
    assert!(e.contains("removed"), "{e}");
}

#[test]
fn tightening_or_repeating_a_mode_is_refused() {
    for (from, to) in [
        ("NULLABLE", "REQUIRED"),
        ("NULLABLE", "REPEATED"),
        ("REPEATED", "NULLABLE"),
        ("REQUIRED", "REPEATED"),
    ] {
        let e = refused(
            json!([{"name": "a", "type": "STRING", "mode": from}]),
            json!([{"name": "a", "type": "STRING", "mode": to}]),
        );
        assert!(e.contains(&format!("from {from} to {to}")), "{e}");
    }
}

#[test]
fn changed_parameters_are_refused() {
    let e = refused(
        json!([{"name": "a", "type": "STRING", "maxLength": 10}]),
        json!([{"name": "a", "type": "STRING", "maxLength": 20}]),
    );
    assert!(e.contains("\"maxLength\" changed from 10 to 20"), "{e}");
    let e = refused(
        json!([{"name": "a", "type": "NUMERIC", "precision": 10, "scale": 2}]),
        json!([{"name": "a", "type": "NUMERIC", "precision": 12, "scale": 2}]),
    );
    assert!(e.contains("\"precision\""), "{e}");
}

#[test]
fn merge_appends_new_columns_relaxes_modes_and_keeps_the_tables_own() {
    let current = vec![
        json!({"name": "a", "type": "STRING", "mode": "REQUIRED"}),
        json!({"name": "legacy", "type": "STRING", "mode": "NULLABLE"}),
        json!({"name": "r", "type": "RECORD", "mode": "NULLABLE",
               "fields": [{"name": "x", "type": "STRING", "mode": "NULLABLE"}]}),
        json!({"name": "other", "type": "STRING", "mode": "NULLABLE"}),
    ];
    let wanted = vec![
        json!({"name": "coupon", "type": "STRING", "mode": "NULLABLE"}),
        json!({"name": "A", "type": "STRING", "mode": "NULLABLE"}),
        json!({"name": "r", "type": "RECORD", "mode": "NULLABLE", "fields": [
            {"name": "x", "type": "STRING", "mode": "NULLABLE"},
            {"name": "y", "type": "INTEGER", "mode": "REPEATED"}]}),
        json!({"name": "other", "type": "STRING", "mode": "NULLABLE"}),
    ];
    let merged = merge_for_patch(&current, &wanted).expect("changed");
    assert_eq!(
        merged,
        vec![
            json!({"name": "a", "type": "STRING", "mode": "NULLABLE"}),
            json!({"name": "legacy", "type": "STRING", "mode": "NULLABLE"}),
            json!({"name": "r", "type": "RECORD", "mode": "NULLABLE", "fields": [
                {"name": "x", "type": "STRING", "mode": "NULLABLE"},
                {"name": "y", "type": "INTEGER", "mode": "REPEATED"}]}),
            json!({"name": "other", "type": "STRING", "mode": "NULLABLE"}),
            json!({"name": "coupon", "type": "STRING", "mode": "NULLABLE"}),
        ]
    );
    assert_eq!(merge_for_patch(&merged, &wanted), None);
}

#[test]
fn a_schema_round_tripped_through_bigquery_json_needs_no_patch() {
    let s = one(json!([{"name": "a", "type": "INT64", "mode": "REQUIRED"}]));
    let t = s.get("events", "click").unwrap();
    let fields = t.to_bigquery_json();
    let fields = fields.as_array().unwrap();
    assert_eq!(merge_for_patch(fields, fields), None);
}
