//! insertAll request bodies.
//!
//! Rows are already JSON text; the body is spliced together without parsing them again:
//! `{"kind":"bigquery#tableDataInsertAllRequest","skipInvalidRows":…,"ignoreUnknownValues":false,
//! "templateSuffix":"YYYYMMDD","rows":[{"insertId":"…","json":<row>},…]}`.

use std::io::Write as _;

use flate2::write::GzEncoder;
use flate2::Compression;

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

/// gzip-compresses a body.
pub fn gzip(body: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::with_capacity(body.len() / 4 + 64), Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(body);
    enc.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize, size: usize) -> Vec<EncodedRow> {
        (0..n)
            .map(|i| EncodedRow {
                insert_id: format!("id-{i}"),
                json: format!("{{\"v\":\"{}\"}}", "x".repeat(size)),
            })
            .collect()
    }

    #[test]
    fn splits_by_rows_and_bytes() {
        let r = rows(1200, 10);
        let parts = split(&r, 500, usize::MAX);
        assert_eq!(parts, vec![0..500, 500..1000, 1000..1200]);
        let r = rows(10, 1000);
        let parts = split(&r, 500, 3500);
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [3, 3, 3, 1]
        );
        assert_eq!(parts.iter().map(|p| p.len()).sum::<usize>(), 10);
        // A row bigger than the limit travels alone.
        let r = rows(3, 5000);
        assert_eq!(split(&r, 500, 3000).len(), 3);
    }

    #[test]
    fn body_is_the_documented_request() {
        let r = vec![EncodedRow {
            insert_id: "a\"1".into(),
            json: r#"{"x":1}"#.into(),
        }];
        let b = body(&r, Some("20261122"), false);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["kind"], "bigquery#tableDataInsertAllRequest");
        assert_eq!(v["templateSuffix"], "20261122");
        assert_eq!(v["skipInvalidRows"], false);
        assert_eq!(v["rows"][0]["insertId"], "a\"1");
        assert_eq!(v["rows"][0]["json"]["x"], 1);
        // The official client's model reads it back.
        let parsed: gcp_bigquery_client::model::table_data_insert_all_request::TableDataInsertAllRequest =
            serde_json::from_slice(&b).unwrap();
        assert_eq!(parsed.len(), 1);
        let gz = gzip(&b);
        let mut d = flate2::read::GzDecoder::new(&gz[..]);
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut d, &mut back).unwrap();
        assert_eq!(back, b);
    }
}
