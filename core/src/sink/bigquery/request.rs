//! insertAll request bodies.
//!
//! Rows are already JSON text; the body is spliced together without parsing them again:
//! `{"kind":"bigquery#tableDataInsertAllRequest","skipInvalidRows":…,"ignoreUnknownValues":false,
//! "templateSuffix":"YYYYMMDD","rows":[{"insertId":"…","json":<row>},…]}`.

use crate::sink::EncodedRow;

/// Splits `rows` into runs of at most `max_rows` rows and `max_bytes` bytes of row JSON (a
/// single larger row gets a request of its own; BigQuery will judge it).
pub fn split(
    rows: &[EncodedRow],
    max_rows: usize,
    max_bytes: usize,
) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, row) in rows.iter().enumerate() {
        let len = row.json.len() + row.insert_id.len() + 32;
        if i > start && (i - start >= max_rows || bytes + len > max_bytes) {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += len;
    }
    if start < rows.len() {
        out.push(start..rows.len());
    }
    out
}

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
