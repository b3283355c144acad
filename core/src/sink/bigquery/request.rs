//! insertAll request bodies.
//!
//! Rows are already JSON text (requests are cut by `sink::http::split`); the body is spliced
//! together without parsing them again:
//! `{"kind":"bigquery#tableDataInsertAllRequest","skipInvalidRows":…,"ignoreUnknownValues":false,
//! "templateSuffix":"YYYYMMDD","rows":[{"insertId":"…","json":<row>},…]}`.

use crate::sink::EncodedRow;

/// The JSON body for `rows`.
pub fn body<'a>(
    rows: impl IntoIterator<Item = &'a EncodedRow>,
    template_suffix: Option<&str>,
    skip_invalid_rows: bool,
) -> Vec<u8> {
    let mut b = Vec::with_capacity(4096);
    b.extend_from_slice(b"{\"kind\":\"bigquery#tableDataInsertAllRequest\",\"skipInvalidRows\":");
    b.extend_from_slice(if skip_invalid_rows { b"true" } else { b"false" });
    b.extend_from_slice(b",\"ignoreUnknownValues\":false");
    if let Some(s) = template_suffix {
        b.extend_from_slice(b",\"templateSuffix\":");
        json_string(&mut b, s);
    }
    b.extend_from_slice(b",\"rows\":[");
    for (i, row) in rows.into_iter().enumerate() {
        if i > 0 {
            b.push(b',');
        }
        b.extend_from_slice(b"{\"insertId\":");
        json_string(&mut b, &row.insert_id);
        b.extend_from_slice(b",\"json\":");
        b.extend_from_slice(row.json.as_bytes());
        b.push(b'}');
    }
    b.extend_from_slice(b"]}");
    b
}

fn json_string(out: &mut Vec<u8>, s: &str) {
    // serde_json escapes exactly as JSON requires; writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}
