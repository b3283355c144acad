//! The BigQuery test server driven over plain HTTP/1.1 (a small std client below, so that every
//! byte the server sends, or does not send, is visible).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use evlog_tests::bq::{BqTestConfig, BqTestServer, Fault, FaultTarget};
use serde_json::{json, Value};

const IO_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request on a fresh connection (`Connection: close`); Err when the connection fails or
/// closes before a complete answer.
fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("no complete answer ({} bytes)", raw.len()),
        ));
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let body = raw[split + 4..].to_vec();
    Ok(Resp {
        status,
        headers,
        body,
    })
}

fn post_json(server: &BqTestServer, path: &str, body: &Value) -> Resp {
    send(
        server.addr(),
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
    .expect("request")
}

fn get(server: &BqTestServer, path: &str) -> Resp {
    send(server.addr(), "GET", path, &[], b"").expect("request")
}

const P: &str = "proj";
const D: &str = "events";

fn insert_path(t: &str) -> String {
    format!("/bigquery/v2/projects/{P}/datasets/{D}/tables/{t}/insertAll")
}

fn schema() -> Value {
    json!([
        {"name": "user_id", "type": "INTEGER", "mode": "REQUIRED"},
        {"name": "amount", "type": "NUMERIC"},
        {"name": "tags", "type": "STRING", "mode": "REPEATED"},
        {"name": "item", "type": "RECORD", "fields": [
            {"name": "sku", "type": "STRING"}, {"name": "qty", "type": "INT64"}]},
        {"name": "at", "type": "TIMESTAMP"},
        {"name": "ok", "type": "BOOLEAN"}
    ])
}

fn server_with(cfg: BqTestConfig) -> BqTestServer {
    let s = BqTestServer::start_blocking(cfg).expect("start");
    s.create_table(P, D, "tx", &schema()).expect("table");
    s
}

fn server() -> BqTestServer {
    server_with(BqTestConfig::default())
}

fn rows_req(rows: &[(Option<&str>, Value)]) -> Value {
    let rows: Vec<Value> = rows
        .iter()
        .map(|(id, j)| match id {
            Some(id) => json!({"insertId": id, "json": j}),
            None => json!({"json": j}),
        })
        .collect();
    json!({"kind": "bigquery#tableDataInsertAllRequest", "rows": rows})
}

#[test]
fn insert_then_list_and_get_round_trip() {
    let s = server();
    let r = post_json(
        &s,
        &insert_path("tx"),
        &rows_req(&[
            (
                Some("a"),
                json!({"user_id": 1, "amount": "9.99", "tags": ["x", "y"],
                       "item": {"sku": "S1", "qty": 2}, "at": "2024-01-02T03:04:05Z", "ok": true}),
            ),
            (Some("b"), json!({"user_id": "2"})),
        ]),
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"kind": "bigquery#tableDataInsertAllResponse"})
    );
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));

    let rows = s.rows(P, D, "tx");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["item"], json!({"sku": "S1", "qty": 2}));
    assert_eq!(
        s.insert_ids(P, D, "tx"),
        vec![Some("a".into()), Some("b".into())]
    );

    let l = get(
        &s,
        &format!("/bigquery/v2/projects/{P}/datasets/{D}/tables/tx/data"),
    );
    assert_eq!(l.status, 200);
    let l = l.json();
    assert_eq!(l["kind"], "bigquery#tableDataList");
    assert_eq!(l["totalRows"], "2");
    assert!(l.get("pageToken").is_none());
    let f = &l["rows"][0]["f"];
    assert_eq!(f[0]["v"], "1");
    assert_eq!(f[1]["v"], "9.99");
    assert_eq!(f[2]["v"], json!([{"v": "x"}, {"v": "y"}]));
    assert_eq!(f[3]["v"], json!({"f": [{"v": "S1"}, {"v": "2"}]}));
    assert_eq!(f[4]["v"], "1.704164645E9");
    assert_eq!(f[5]["v"], "true");
    let f = &l["rows"][1]["f"];
    assert_eq!(f[0]["v"], "2");
    assert_eq!(f[1]["v"], Value::Null);
    assert_eq!(f[2]["v"], json!([]));

    let t = get(
        &s,
        &format!("/bigquery/v2/projects/{P}/datasets/{D}/tables/tx"),
    )
    .json();
    assert_eq!(t["kind"], "bigquery#table");
    assert_eq!(t["id"], format!("{P}:{D}.tx"));
    assert_eq!(
        t["tableReference"],
        json!({"projectId": P, "datasetId": D, "tableId": "tx"})
    );
    assert_eq!(t["numRows"], "2");
    assert_eq!(
        t["schema"]["fields"][0],
        json!({"name": "user_id", "type": "INTEGER", "mode": "REQUIRED"})
    );
    assert_eq!(t["schema"]["fields"][3]["fields"][1]["type"], "INTEGER");
    let st = s.stats();
    assert_eq!((st.rows_stored, st.insert_all_requests), (2, 1));
}

#[test]
fn gzip_bodies_are_accepted_and_bad_gzip_is_a_400() {
    use flate2::write::GzEncoder;
    let s = server();
    let body = rows_req(&[(Some("g1"), json!({"user_id": 7}))]).to_string();
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(body.as_bytes()).unwrap();
    let gz = enc.finish().unwrap();
    let r = send(
        s.addr(),
        "POST",
        &insert_path("tx"),
        &[
            ("Content-Encoding", "gzip"),
            ("Content-Type", "application/octet-stream"),
        ],
        &gz,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(s.rows(P, D, "tx"), vec![json!({"user_id": 7})]);
    assert_eq!(s.stats().gzip_requests, 1);
    assert!(s.requests()[0].gzip);

    let r = send(
        s.addr(),
        "POST",
        &insert_path("tx"),
        &[("Content-Encoding", "gzip")],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["errors"][0]["reason"], "badRequest");
}

#[test]
fn template_suffix_creates_the_instance_table_from_the_base_schema() {
    let s = server();
    let mut req = rows_req(&[(Some("d1"), json!({"user_id": 1}))]);
    req["templateSuffix"] = json!("20240102");
    assert_eq!(post_json(&s, &insert_path("tx"), &req).status, 200);
    assert_eq!(s.table_ids(P, D), vec!["tx", "tx20240102"]);
    assert!(s.rows(P, D, "tx").is_empty());
    assert_eq!(s.rows(P, D, "tx20240102").len(), 1);
    // The instance table has the base schema: a bad row is judged by it.
    let mut bad = rows_req(&[(None, json!({"user_id": "x"}))]);
    bad["templateSuffix"] = json!("20240102");
    let r = post_json(&s, &insert_path("tx"), &bad).json();
    assert_eq!(r["insertErrors"][0]["errors"][0]["location"], "user_id");
    let t = get(
        &s,
        &format!("/bigquery/v2/projects/{P}/datasets/{D}/tables/tx20240102"),
    )
    .json();
    assert_eq!(t["schema"]["fields"].as_array().unwrap().len(), 6);
    assert_eq!(s.stats().tables_created, 2);
}

#[test]
fn insert_ids_are_deduplicated_within_the_window() {
    let s = server_with(BqTestConfig {
        dedupe_window: Duration::from_millis(300),
        ..BqTestConfig::default()
    });
    let req = rows_req(&[
        (Some("id-1"), json!({"user_id": 1})),
        (Some("id-2"), json!({"user_id": 2})),
        (None, json!({"user_id": 3})),
    ]);
    assert_eq!(post_json(&s, &insert_path("tx"), &req).status, 200);
    // A retry of the same request: acknowledged, only the row without insertId is stored again.
    let r = post_json(&s, &insert_path("tx"), &req);
    assert_eq!(
        r.json(),
        json!({"kind": "bigquery#tableDataInsertAllResponse"})
    );
    assert_eq!(s.rows(P, D, "tx").len(), 4);
    assert_eq!(s.stats().duplicates_dropped, 2);
    // Duplicates within one request too.
    let dup = rows_req(&[
        (Some("z"), json!({"user_id": 9})),
        (Some("z"), json!({"user_id": 9})),
    ]);
    post_json(&s, &insert_path("tx"), &dup);
    assert_eq!(s.rows(P, D, "tx").len(), 5);
    // After the window the same id is new again.
    std::thread::sleep(Duration::from_millis(400));
    post_json(
        &s,
        &insert_path("tx"),
        &rows_req(&[(Some("id-1"), json!({"user_id": 1}))]),
    );
    assert_eq!(s.rows(P, D, "tx").len(), 6);
    assert_eq!(s.stats().duplicates_dropped, 3);
}

#[test]
fn invalid_rows_stop_the_request_unless_skip_invalid_rows() {
    let s = server();
    let rows = [
        (Some("r0"), json!({"user_id": 1})),
        (Some("r1"), json!({"user_id": "not a number"})),
        (Some("r2"), json!({"user_id": 2})),
        (Some("r3"), json!({"user_id": 3, "nope": 1})),
    ];
    let r = post_json(&s, &insert_path("tx"), &rows_req(&rows));
    assert_eq!(r.status, 200);
    let r = r.json();
    let errs = r["insertErrors"].as_array().unwrap();
    assert_eq!(errs.len(), 4);
    assert_eq!(
        errs[0],
        json!({"index": 0, "errors": [{"reason": "stopped", "location": "", "debugInfo": "", "message": ""}]})
    );
    assert_eq!(errs[1]["index"], 1);
    assert_eq!(errs[1]["errors"][0]["reason"], "invalid");
    assert_eq!(errs[1]["errors"][0]["location"], "user_id");
    assert!(errs[1]["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("not a number"));
    assert_eq!(errs[2]["errors"][0]["reason"], "stopped");
    assert_eq!(errs[3]["errors"][0]["location"], "nope");
    assert_eq!(errs[3]["errors"][0]["message"], "no such field: nope.");
    assert!(s.rows(P, D, "tx").is_empty(), "nothing is stored");

    let mut req = rows_req(&rows);
    req["skipInvalidRows"] = json!(true);
    let r = post_json(&s, &insert_path("tx"), &req).json();
    let idx: Vec<i64> = r["insertErrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_i64().unwrap())
        .collect();
    assert_eq!(idx, [1, 3]);
    assert_eq!(
        s.rows(P, D, "tx"),
        vec![json!({"user_id": 1}), json!({"user_id": 2})]
    );

    let mut req = rows_req(&rows[3..]);
    req["ignoreUnknownValues"] = json!(true);
    let r = post_json(&s, &insert_path("tx"), &req).json();
    assert!(r.get("insertErrors").is_none(), "{r}");
    assert_eq!(s.rows(P, D, "tx")[2], json!({"user_id": 3}));
    let st = s.stats();
    assert_eq!(
        (st.rows_invalid, st.rows_stopped, st.rows_stored),
        (4, 2, 3)
    );
}

#[test]
fn values_are_checked_by_column_type_and_mode() {
    let s = BqTestServer::start_blocking(BqTestConfig::default()).unwrap();
    let cols = [
        ("s", "STRING"),
        ("b", "BYTES"),
        ("i", "INT64"),
        ("f", "FLOAT64"),
        ("n", "NUMERIC"),
        ("bn", "BIGNUMERIC"),
        ("bo", "BOOL"),
        ("ts", "TIMESTAMP"),
        ("d", "DATE"),
        ("t", "TIME"),
        ("dt", "DATETIME"),
        ("j", "JSON"),
        ("g", "GEOGRAPHY"),
    ];
    let fields: Vec<Value> = cols
        .iter()
        .map(|(n, t)| json!({"name": n, "type": t}))
        .chain([
            json!({"name": "req", "type": "STRING", "mode": "REQUIRED"}),
            json!({"name": "rep", "type": "INTEGER", "mode": "REPEATED"}),
            json!({"name": "short", "type": "STRING", "maxLength": "3"}),
            json!({"name": "rec", "type": "RECORD", "fields": [{"name": "x", "type": "DATE"}]}),
        ])
        .collect();
    s.create_table(P, D, "all", &Value::Array(fields)).unwrap();
    let good = [
        ("s", json!("text")),
        ("b", json!("aGVsbG8=")),
        ("i", json!(-5)),
        ("i", json!("9223372036854775807")),
        ("f", json!(1.5)),
        ("f", json!("NaN")),
        ("n", json!("123.456789012")),
        ("n", json!(12)),
        ("bn", json!("1.12345678901234567890123456789012345678")),
        ("bo", json!(false)),
        ("bo", json!("true")),
        ("ts", json!("2024-05-06 07:08:09.123456 UTC")),
        ("ts", json!("2024-05-06T07:08:09+02:00")),
        ("ts", json!(1_700_000_000.5)),
        ("d", json!("2024-02-29")),
        ("t", json!("23:59:59.999999")),
        ("dt", json!("2024-05-06T07:08:09")),
        ("j", json!("{\"a\":1}")),
        ("j", json!({"a": 1})),
        ("g", json!("POINT(1 2)")),
        ("rep", json!([1, "2"])),
        ("short", json!("abc")),
        ("rec", json!({"x": "2024-01-01"})),
    ];
    for (col, v) in good {
        let mut row = json!({"req": "r"});
        row[col] = v.clone();
        let r = post_json(&s, &insert_path("all"), &rows_req(&[(None, row)])).json();
        assert!(r.get("insertErrors").is_none(), "{col}={v} rejected: {r}");
    }
    let bad = [
        ("s", json!(5), "s"),
        ("b", json!("not base64!"), "b"),
        ("i", json!(1.5), "i"),
        ("i", json!("9223372036854775808"), "i"),
        ("f", json!("x"), "f"),
        ("n", json!("1.1234567891"), "n"),
        ("n", json!("abc"), "n"),
        ("bo", json!("yes"), "bo"),
        ("ts", json!("2024-13-01T00:00:00Z"), "ts"),
        ("d", json!("2023-02-29"), "d"),
        ("t", json!("24:00:00"), "t"),
        ("dt", json!("2024-05-06T07:08:09Z"), "dt"),
        ("j", json!("{not json"), "j"),
        ("g", json!("somewhere"), "g"),
        ("rep", json!(1), "rep"),
        ("rep", json!([1, null]), "rep"),
        ("i", json!([1]), "i"),
        ("short", json!("abcd"), "short"),
        ("rec", json!("x"), "rec"),
        ("rec", json!({"x": "nope"}), "rec.x"),
        ("req", json!(null), "req"),
    ];
    for (col, v, loc) in bad {
        let mut row = json!({"req": "r"});
        row[col] = v.clone();
        let r = post_json(&s, &insert_path("all"), &rows_req(&[(None, row)])).json();
        let e = &r["insertErrors"][0]["errors"][0];
        assert_eq!(e["reason"], "invalid", "{col}={v} accepted: {r}");
        assert_eq!(e["location"], loc, "{col}={v}: {r}");
        assert!(!e["message"].as_str().unwrap().is_empty());
    }
    let r = post_json(&s, &insert_path("all"), &rows_req(&[(None, json!({}))])).json();
    assert_eq!(
        r["insertErrors"][0]["errors"][0]["message"],
        "Missing required field: req."
    );
}

#[test]
fn errors_have_bigquery_bodies() {
    let s = server_with(BqTestConfig {
        max_rows_per_request: 3,
        max_request_bytes: 4096,
        ..BqTestConfig::default()
    });
    let check = |r: Resp, code: u16, reason: &str, msg: &str| {
        assert_eq!(r.status, code);
        let e = r.json();
        assert_eq!(e["error"]["code"], code);
        assert_eq!(e["error"]["errors"][0]["reason"], reason, "{e}");
        let m = e["error"]["message"].as_str().unwrap();
        assert!(m.contains(msg), "{m}");
        assert_eq!(e["error"]["errors"][0]["message"], m);
        assert!(e["error"]["status"].is_string());
    };
    let one = rows_req(&[(None, json!({"user_id": 1}))]);
    check(
        post_json(&s, &insert_path("missing"), &one),
        404,
        "notFound",
        "Not found: Table proj:events.missing",
    );
    check(
        post_json(
            &s,
            "/bigquery/v2/projects/proj/datasets/nods/tables/tx/insertAll",
            &one,
        ),
        404,
        "notFound",
        "Not found: Dataset proj:nods",
    );
    check(
        get(
            &s,
            "/bigquery/v2/projects/proj/datasets/events/tables/missing",
        ),
        404,
        "notFound",
        "Not found: Table proj:events.missing",
    );
    let table = json!({"tableReference": {"projectId": P, "datasetId": D, "tableId": "tx"},
                       "schema": {"fields": [{"name": "a", "type": "STRING"}]}});
    check(
        post_json(
            &s,
            "/bigquery/v2/projects/proj/datasets/events/tables",
            &table,
        ),
        409,
        "duplicate",
        "Already Exists: Table proj:events.tx",
    );
    check(
        post_json(
            &s,
            "/bigquery/v2/projects/proj/datasets",
            &json!({"datasetReference": {"projectId": P, "datasetId": D}}),
        ),
        409,
        "duplicate",
        "Already Exists: Dataset proj:events",
    );
    check(
        send(s.addr(), "POST", &insert_path("tx"), &[], b"{not json").unwrap(),
        400,
        "parseError",
        "Invalid JSON payload",
    );
    check(
        post_json(&s, &insert_path("tx"), &json!({"rows": []})),
        400,
        "invalid",
        "No rows present",
    );
    let four = rows_req(&[
        (None, json!({"user_id": 1})),
        (None, json!({"user_id": 1})),
        (None, json!({"user_id": 1})),
        (None, json!({"user_id": 1})),
    ]);
    check(
        post_json(&s, &insert_path("tx"), &four),
        400,
        "invalid",
        "too many rows present in the request, limit: 3 row count: 4.",
    );
    let big = rows_req(&[(None, json!({"user_id": 1, "tags": ["x".repeat(5000)]}))]);
    check(
        post_json(&s, &insert_path("tx"), &big),
        400,
        "invalid",
        "Request payload size exceeds the limit: 4096 bytes.",
    );
    check(get(&s, "/nowhere"), 404, "notFound", "Not found");
    // A schema BigQuery would refuse.
    let bad_schema = json!({"tableReference": {"projectId": P, "datasetId": D, "tableId": "t2"},
                            "schema": {"fields": [{"name": "a", "type": "VARCHAR"}]}});
    check(
        post_json(
            &s,
            "/bigquery/v2/projects/proj/datasets/events/tables",
            &bad_schema,
        ),
        400,
        "invalid",
        "VARCHAR",
    );
    assert!(s.rows(P, D, "tx").is_empty());
}

#[test]
fn auth_is_required_when_configured() {
    let s = server_with(BqTestConfig {
        require_auth: true,
        ..BqTestConfig::default()
    });
    let body = rows_req(&[(None, json!({"user_id": 1}))]).to_string();
    let r = send(s.addr(), "POST", &insert_path("tx"), &[], body.as_bytes()).unwrap();
    assert_eq!(r.status, 401);
    let e = r.json();
    assert_eq!(e["error"]["status"], "UNAUTHENTICATED");
    assert_eq!(e["error"]["errors"][0]["reason"], "required");
    let r = send(
        s.addr(),
        "POST",
        &insert_path("tx"),
        &[("Authorization", "Bearer anything")],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(s.rows(P, D, "tx").len(), 1);
}

#[test]
fn tables_and_datasets_are_created_over_http() {
    let s = BqTestServer::start_blocking(BqTestConfig::default()).unwrap();
    let t = json!({"tableReference": {"projectId": "p", "datasetId": "d", "tableId": "t"},
                   "schema": {"fields": [{"name": "a", "type": "STRING", "mode": "REQUIRED"}]}});
    // No dataset yet.
    assert_eq!(
        post_json(&s, "/bigquery/v2/projects/p/datasets/d/tables", &t).status,
        404
    );
    let r = post_json(
        &s,
        "/bigquery/v2/projects/p/datasets",
        &json!({"datasetReference": {"projectId": "p", "datasetId": "d"}}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["kind"], "bigquery#dataset");
    assert_eq!(
        get(&s, "/bigquery/v2/projects/p/datasets/d").json()["id"],
        "p:d"
    );
    let r = post_json(&s, "/bigquery/v2/projects/p/datasets/d/tables", &t);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["schema"]["fields"][0]["mode"], "REQUIRED");
    assert_eq!(s.table_ids("p", "d"), ["t"]);
    let l = get(&s, "/bigquery/v2/projects/p/datasets/d/tables").json();
    assert_eq!(l["tables"][0]["tableReference"]["tableId"], "t");
    let r = send(
        s.addr(),
        "DELETE",
        "/bigquery/v2/projects/p/datasets/d/tables/t",
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 204);
    assert!(s.table_ids("p", "d").is_empty());
}

#[test]
fn list_pages_with_max_results_page_token_and_start_index() {
    let s = server();
    let rows: Vec<(Option<&str>, Value)> = (0..25).map(|i| (None, json!({"user_id": i}))).collect();
    post_json(&s, &insert_path("tx"), &rows_req(&rows));
    let base = format!("/bigquery/v2/projects/{P}/datasets/{D}/tables/tx/data");
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = match &token {
            Some(t) => format!("{base}?maxResults=10&pageToken={t}"),
            None => format!("{base}?maxResults=10"),
        };
        let l = get(&s, &q).json();
        assert_eq!(l["totalRows"], "25");
        for r in l["rows"].as_array().unwrap() {
            seen.push(r["f"][0]["v"].as_str().unwrap().parse::<i64>().unwrap());
        }
        pages += 1;
        match l.get("pageToken").and_then(Value::as_str) {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
        assert!(pages < 10);
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (0..25).collect::<Vec<_>>());
    let l = get(&s, &format!("{base}?startIndex=23")).json();
    assert_eq!(l["rows"].as_array().unwrap().len(), 2);
    let l = get(&s, &format!("{base}?startIndex=99")).json();
    assert!(l.get("rows").is_none());
    assert_eq!(get(&s, &format!("{base}?maxResults=x")).status, 400);
}

fn one_row() -> Value {
    rows_req(&[(Some("f1"), json!({"user_id": 1}))])
}

#[test]
fn every_fault_kind_is_visible_to_a_client() {
    let s = server_with(BqTestConfig {
        retry_after_secs: 7,
        ..BqTestConfig::default()
    });
    let path = insert_path("tx");

    s.inject(Fault::Http500Json);
    let r = post_json(&s, &path, &one_row());
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["error"]["errors"][0]["reason"], "internalError");

    s.inject(Fault::Http503Json);
    let r = post_json(&s, &path, &one_row());
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"]["errors"][0]["reason"], "backendError");
    assert_eq!(r.json()["error"]["status"], "UNAVAILABLE");

    s.inject(Fault::Http500PlainText);
    let r = post_json(&s, &path, &one_row());
    assert_eq!(r.status, 500);
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert!(serde_json::from_slice::<Value>(&r.body).is_err());

    s.inject(Fault::Http429);
    let r = post_json(&s, &path, &one_row());
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("7"));
    assert_eq!(
        r.json()["error"]["errors"][0]["reason"],
        "rateLimitExceeded"
    );

    s.inject(Fault::Http403RateLimit);
    let r = post_json(&s, &path, &one_row());
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json()["error"]["errors"][0]["reason"],
        "rateLimitExceeded"
    );
    assert!(
        s.rows(P, D, "tx").is_empty(),
        "failed requests store nothing"
    );

    s.inject(Fault::Slow(Duration::from_millis(300)));
    let t0 = Instant::now();
    let r = post_json(&s, &path, &one_row());
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert_eq!(r.status, 200);
    assert_eq!(s.rows(P, D, "tx").len(), 1);

    s.inject(Fault::DropConnection);
    let e = send(
        s.addr(),
        "POST",
        &path,
        &[],
        one_row().to_string().as_bytes(),
    );
    assert!(e.is_err(), "{e:?}");
    assert_eq!(s.rows(P, D, "tx").len(), 1);

    // Stored, but the answer never comes; the retry is acknowledged and deduplicated.
    let req = rows_req(&[(Some("f2"), json!({"user_id": 2}))]);
    s.inject(Fault::DropAfterInsert);
    assert!(send(s.addr(), "POST", &path, &[], req.to_string().as_bytes()).is_err());
    assert_eq!(s.rows(P, D, "tx").len(), 2);
    assert_eq!(post_json(&s, &path, &req).status, 200);
    assert_eq!(s.rows(P, D, "tx").len(), 2);

    // Queued faults wait for insertAll; FaultTarget::Any hits the next request of any kind.
    s.inject(Fault::Http503Json);
    assert_eq!(
        get(&s, "/bigquery/v2/projects/proj/datasets/events/tables/tx").status,
        200
    );
    assert_eq!(s.pending_faults(), 1);
    s.clear_faults();
    s.inject_on(FaultTarget::Any, Fault::Http503Json);
    assert_eq!(
        get(&s, "/bigquery/v2/projects/proj/datasets/events/tables/tx").status,
        503
    );

    let st = s.stats();
    assert_eq!(st.faults_injected, 9);
    assert_eq!(st.faults_by_kind["http503_json"], 2);
    assert_eq!(st.faults_by_kind["drop"], 1);
    let statuses: Vec<u16> = s.requests().iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [500, 503, 500, 429, 403, 200, 0, 200, 200, 200, 503]
    );
}

#[test]
fn failure_ratio_is_reproducible_from_the_seed() {
    let run = |seed: u64| -> Vec<u16> {
        let s = server();
        s.set_failure_ratio(0.5, seed);
        (0..40)
            .map(|i| {
                let req = rows_req(&[(Some(&format!("r{i}")), json!({"user_id": i}))]);
                send(
                    s.addr(),
                    "POST",
                    &insert_path("tx"),
                    &[],
                    req.to_string().as_bytes(),
                )
                .map_or(0, |r| r.status)
            })
            .collect()
    };
    let a = run(42);
    assert_eq!(a, run(42));
    assert_ne!(a, run(43));
    let failed = a.iter().filter(|&&c| c != 200).count();
    assert!(
        (8..=32).contains(&failed),
        "{failed} of 40 failed at p=0.5: {a:?}"
    );
    assert!(a.contains(&0) && a.contains(&503) && a.contains(&429));
}

#[test]
fn a_denied_table_answers_403_access_denied_until_allowed() {
    let s = server();
    let create = json!({"tableReference": {"projectId": P, "datasetId": D, "tableId": "dl"},
                        "schema": {"fields": [{"name": "a", "type": "STRING"}]}});
    let tables = format!("/bigquery/v2/projects/{P}/datasets/{D}/tables");
    s.deny_table(D, "dl", true);
    s.deny_table(D, "tx", true);
    // Denied whether the table exists (tx) or not (dl): permissions are checked first.
    for t in ["tx", "dl"] {
        let r = post_json(&s, &insert_path(t), &one_row());
        assert_eq!(r.status, 403, "{t}");
        let e = &r.json()["error"];
        assert_eq!(e["errors"][0]["reason"], "accessDenied");
        assert_eq!(e["status"], "PERMISSION_DENIED");
        assert!(e["message"]
            .as_str()
            .unwrap()
            .contains("bigquery.tables.updateData"));
    }
    let r = post_json(&s, &tables, &create);
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"]["errors"][0]["reason"], "accessDenied");
    assert!(!s.table_exists(P, D, "dl"));
    // Other tables and reads are untouched.
    assert_eq!(get(&s, &format!("{tables}/tx")).status, 200);

    s.deny_table(D, "dl", false);
    s.deny_table(D, "tx", false);
    let r = post_json(&s, &insert_path("dl"), &one_row());
    assert_eq!(r.status, 404, "a missing table is notFound again");
    assert_eq!(r.json()["error"]["errors"][0]["reason"], "notFound");
    assert_eq!(post_json(&s, &tables, &create).status, 200);
    assert_eq!(
        post_json(
            &s,
            &insert_path("dl"),
            &rows_req(&[(None, json!({"a": "x"}))])
        )
        .status,
        200
    );
    assert_eq!(s.rows(P, D, "dl").len(), 1);
}

#[test]
fn down_and_refusing_modes() {
    let s = server();
    s.set_down(true);
    let r = get(&s, "/bigquery/v2/projects/proj/datasets/events/tables/tx");
    assert_eq!(r.status, 503);
    assert_eq!(post_json(&s, &insert_path("tx"), &one_row()).status, 503);
    assert_eq!(s.stats().down_rejections, 2);
    s.set_down(false);
    assert_eq!(post_json(&s, &insert_path("tx"), &one_row()).status, 200);

    s.set_refusing(true);
    // The listener closes asynchronously: wait (bounded) until connections are refused.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect_timeout(&s.addr(), Duration::from_secs(1)) {
            Err(_) => {
                // The first failure may race the closing listener; the next one is a refusal.
                let e = TcpStream::connect_timeout(&s.addr(), Duration::from_secs(1)).unwrap_err();
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
                break;
            }
            Ok(_) => {
                assert!(Instant::now() < deadline, "still accepting");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    s.set_refusing(false);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match send(
            s.addr(),
            "GET",
            "/bigquery/v2/projects/proj/datasets/events/tables/tx",
            &[],
            b"",
        ) {
            Ok(r) => {
                assert_eq!(r.status, 200);
                break;
            }
            Err(e) => {
                assert!(Instant::now() < deadline, "not accepting again: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

#[test]
fn async_start_works_inside_a_tokio_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let s = BqTestServer::start(BqTestConfig::default()).await.unwrap();
        s.create_table("p", "d", "t", &json!([{"name": "a", "type": "STRING"}]))
            .unwrap();
        let addr = s.addr();
        let r = tokio::task::spawn_blocking(move || {
            send(
                addr,
                "GET",
                "/bigquery/v2/projects/p/datasets/d/tables/t",
                &[],
                b"",
            )
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(r.status, 200);
        s.shutdown();
    });
}

#[test]
fn the_binary_loads_evlog_schemas_and_serves_admin_endpoints() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let schemas = concat!(env!("CARGO_MANIFEST_DIR"), "/../core/tests/data/schemas");
    let mut child = Command::new(env!("CARGO_BIN_EXE_bq-test-server"))
        .args(["--schemas", schemas, "--project", "lp"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let mut child = Kill(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on http://")
        .expect(&line);
    let addr: SocketAddr = url.parse().unwrap();
    let t = send(
        addr,
        "GET",
        "/bigquery/v2/projects/lp/datasets/events/tables/transaction",
        &[],
        b"",
    )
    .unwrap()
    .json();
    let names: Vec<&str> = t["schema"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"user_id") && names.contains(&"event_id") && names.contains(&"other"),
        "{names:?}"
    );
    let f = send(
        addr,
        "POST",
        "/_fault",
        &[],
        br#"{"fault":"http503_json","count":2}"#,
    )
    .unwrap();
    assert_eq!(f.status, 200);
    let row = json!({"user_id": 1, "event_id": "e1", "event_time": "2024-01-01T00:00:00Z",
                     "received_at": "2024-01-01T00:00:01Z"});
    let body = rows_req(&[(Some("e1"), row)]).to_string();
    let path = "/bigquery/v2/projects/lp/datasets/events/tables/transaction/insertAll";
    for _ in 0..2 {
        assert_eq!(
            send(addr, "POST", path, &[], body.as_bytes())
                .unwrap()
                .status,
            503
        );
    }
    let r = send(addr, "POST", path, &[], body.as_bytes()).unwrap();
    assert_eq!(
        r.json(),
        json!({"kind": "bigquery#tableDataInsertAllResponse"})
    );
    let deny = |denied: bool| {
        let body = json!({"deny": "events.transaction", "denied": denied}).to_string();
        send(addr, "POST", "/_fault", &[], body.as_bytes())
            .unwrap()
            .status
    };
    assert_eq!(deny(true), 200);
    assert_eq!(
        send(addr, "POST", path, &[], body.as_bytes())
            .unwrap()
            .status,
        403
    );
    assert_eq!(deny(false), 200);
    let st = send(addr, "GET", "/_stats", &[], b"").unwrap().json();
    assert_eq!(st["faults_injected"], 2);
    assert_eq!(st["rows_stored"], 1);
    assert_eq!(
        send(addr, "POST", "/_fault", &[], br#"{"fault":"nope"}"#)
            .unwrap()
            .status,
        400
    );
    let _ = child.0.kill();
}
