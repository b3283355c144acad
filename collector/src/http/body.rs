//! Reading a request body within its limits: the declared and the real size
//! (`collector.max_body_bytes`), the bytes all requests in progress hold
//! (`collector.max_in_flight_bytes`, [`BodyBudget`]), a client that stops sending
//! (`collector.request_timeout`), gzip and zstd (`collector.max_decompressed_bytes`; a zstd
//! window of at most 8 MiB); and the nesting depth scan run before any JSON parse
//! (`collector.max_depth`).
//!
//! Refusals: 413 too large, 415 an encoding other than gzip, zstd or identity (the forward sink
//! falls back from zstd to gzip on it), 429 the budget is spent (nothing was kept, come back
//! later), 408 no data in time, 400 a broken read, gzip or zstd (a window over 8 MiB included).

use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{CONTENT_ENCODING, CONTENT_LENGTH};
use hyper::{Request, StatusCode};

use super::answer::{error, too_busy, Resp};
use super::State;

/// What one request's body holds of `collector.max_in_flight_bytes` ([`State::body_bytes`]);
/// given back when dropped (when the request is done with its body and what was parsed from it).
/// A plain atomic count, never waited on: a request that does not fit is answered at once.
pub(super) struct BodyBudget<'a> {
    st: &'a State,
    held: u64,
}

impl<'a> BodyBudget<'a> {
    fn new(st: &'a State) -> Self {
        Self { st, held: 0 }
    }

    /// Grows the reservation to `bytes` in all; a 429 answer when they do not fit now.
    fn cover(&mut self, bytes: u64) -> Result<(), Resp> {
        if bytes <= self.held {
            return Ok(());
        }
        let more = bytes - self.held;
        let limit = self.st.now().collector.max_in_flight_bytes.0;
        let before = self.st.body_bytes.fetch_add(more, Ordering::AcqRel);
        if before + more > limit {
            self.st.body_bytes.fetch_sub(more, Ordering::AcqRel);
            return Err(too_busy(
                self.st,
                &format!(
                    "overloaded: the request bodies in progress hold collector.max_in_flight_bytes ({limit} bytes)"
                ),
            ));
        }
        self.held = bytes;
        Ok(())
    }
}

impl Drop for BodyBudget<'_> {
    fn drop(&mut self) {
        if self.held > 0 {
            self.st.body_bytes.fetch_sub(self.held, Ordering::AcqRel);
        }
    }
}

/// Reads (and gunzips) a request body within the size limits and the in-flight byte budget;
/// the budget holds its bytes until dropped. Reading the body through tells the connection's
/// [`crate::linger::Mark`] (an answer after it keeps the connection).
pub(super) async fn read_body<'a>(
    st: &'a State,
    req: Request<Incoming>,
) -> Result<(Bytes, BodyBudget<'a>), Resp> {
    let max = st.now().collector.max_body_bytes.0;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "body is {} bytes, the limit is {max} (collector.max_body_bytes)",
                declared.unwrap_or(0)
            ),
        ));
    }
    let coding = match req
        .headers()
        .get(CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?"))
    {
        None | Some("identity") => None,
        Some("gzip") => Some(Coding::Gzip),
        Some("zstd") => Some(Coding::Zstd),
        Some(other) => {
            return Err(error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Encoding {other:?} is not supported (use gzip, zstd or none)"),
            ))
        }
    };
    let mut budget = BodyBudget::new(st);
    if let Some(n) = declared {
        budget.cover(n)?;
    }
    // Usually one frame holds the whole body: it is kept as it is, not copied. A client silent
    // for `request_timeout` mid-body gets 408 (it holds a permit and body memory meanwhile).
    let timeout = st.now().collector.request_timeout;
    let idle = tokio::time::sleep(timeout);
    tokio::pin!(idle);
    let read_through = req.extensions().get::<Arc<crate::linger::Mark>>().cloned();
    let mut incoming = req.into_body();
    let mut one: Option<Bytes> = None;
    let mut joined: Option<bytes::BytesMut> = None;
    let mut len = 0u64;
    loop {
        let frame = tokio::select! {
            biased;
            frame = incoming.frame() => frame,
            () = &mut idle => {
                return Err(error(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "no body data for {timeout:?} (collector.request_timeout)"
                    ),
                ))
            }
        };
        let Some(frame) = frame else {
            break;
        };
        idle.as_mut().reset(tokio::time::Instant::now() + timeout);
        let frame = frame.map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        len += data.len() as u64;
        if len > max {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body is larger than {max} bytes (collector.max_body_bytes)"),
            ));
        }
        budget.cover(len)?;
        if let Some(j) = joined.as_mut() {
            j.extend_from_slice(&data);
        } else if let Some(first) = one.take() {
            let mut j = bytes::BytesMut::with_capacity(first.len() + data.len());
            j.extend_from_slice(&first);
            j.extend_from_slice(&data);
            joined = Some(j);
        } else {
            one = Some(data);
        }
    }
    if let Some(mark) = read_through {
        mark.body_read();
    }
    let body = joined
        .map(bytes::BytesMut::freeze)
        .or(one)
        .unwrap_or_default();
    let Some(coding) = coding else {
        return Ok((body, budget));
    };
    let text = decompress(st, coding, &body, &mut budget)?;
    Ok((text, budget))
}

/// A request body's `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    Gzip,
    Zstd,
}

/// Largest zstd window a body may ask for: 8 MiB, the limit RFC 9659 sets for HTTP (a frame
/// may otherwise make the decoder allocate up to 2 GiB). The SDK's level 1 uses at most 512 KiB.
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// Decompresses a gzip body (one member or several) or a zstd body (one frame or several)
/// within `collector.max_decompressed_bytes`, the body and its text together within
/// `collector.max_in_flight_bytes` and `budget`.
fn decompress(
    st: &State,
    coding: Coding,
    body: &Bytes,
    budget: &mut BodyBudget<'_>,
) -> Result<Bytes, Resp> {
    let limit = st.now().collector.max_decompressed_bytes.0;
    let total = st.now().collector.max_in_flight_bytes.0;
    let invalid = |e: std::io::Error| {
        let name = match coding {
            Coding::Gzip => "gzip",
            Coding::Zstd => "zstd",
        };
        error(
            StatusCode::BAD_REQUEST,
            format!("body is not valid {name}: {e}"),
        )
    };
    let mut dec: Box<dyn Read + '_> = match coding {
        Coding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&body[..])),
        Coding::Zstd => {
            let mut z = zstd::stream::read::Decoder::with_buffer(&body[..]).map_err(invalid)?;
            z.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(invalid)?;
            Box::new(z)
        }
    };
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match dec.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return Err(invalid(e)),
        };
        let size = (out.len() + n) as u64;
        if size > limit {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "decompressed body is larger than {limit} bytes (collector.max_decompressed_bytes)"
                ),
            ));
        }
        let held = body.len() as u64 + size;
        if held > total {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "body and its decompressed text are larger than {total} bytes (collector.max_in_flight_bytes)"
                ),
            ));
        }
        budget.cover(held)?;
        out.extend_from_slice(&chunk[..n]);
    }
    Ok(Bytes::from(out))
}

/// The deepest nesting of `text` beyond `max`, as the byte offset where it was exceeded.
pub(super) fn too_deep(text: &[u8], max: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'"' => {
                // Skip the string: to the next quote not escaped by a backslash.
                i += 1;
                loop {
                    match memchr::memchr2(b'"', b'\\', &text[i..]) {
                        None => return None,
                        Some(j) if text[i + j] == b'\\' => i += j + 2,
                        Some(j) => {
                            i += j;
                            break;
                        }
                    }
                    if i >= text.len() {
                        return None;
                    }
                }
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return Some(i);
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::too_deep;

    /// The byte-by-byte definition the fast scan must agree with.
    fn reference(text: &[u8], max: usize) -> Option<usize> {
        let (mut depth, mut in_str, mut escaped) = (0usize, false, false);
        for (i, &b) in text.iter().enumerate() {
            if in_str {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_str = false;
                }
                continue;
            }
            match b {
                b'"' => in_str = true,
                b'{' | b'[' => {
                    depth += 1;
                    if depth > max {
                        return Some(i);
                    }
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        None
    }

    #[test]
    fn depth_scan_skips_strings_and_escapes() {
        let cases: &[&str] = &[
            r#"{"a":{"b":[1,{"c":2}]}}"#,
            r#"{"a":"[[[[{{{{"}"#,
            r#"{"a":"x\"[[[[","b":[[[[1]]]]}"#,
            r#"{"a":"x\\","b":[[[[1]]]]}"#,
            r#"{"a":"\\\"[[[[\\","b":{}}"#,
            r#"[[[[[[[["#,
            r#"{"a":"unterminated [[[["#,
            r#"{"a":"ends with backslash \"#,
            "",
            r#""\"#,
        ];
        for text in cases {
            for max in 0..6 {
                assert_eq!(
                    too_deep(text.as_bytes(), max),
                    reference(text.as_bytes(), max),
                    "{text} max {max}"
                );
            }
        }
    }
}
