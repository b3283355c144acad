//! Talking to BigQuery: tokens, one insertAll attempt, and what its answer means.

use std::sync::Arc;
use std::time::Duration;

use gcp_bigquery_client::model::table_data_insert_all_response::TableDataInsertAllResponse;
use serde::Deserialize;

use super::config::{AuthMethod, BigQueryConfig};
use crate::sink::http::{self, Failure};
use crate::sink::SinkError;

/// BigQuery's OAuth2 scope.
pub const SCOPE: &str = "https://www.googleapis.com/auth/bigquery";

/// Reasons BigQuery documents as retryable.
pub const RETRYABLE_REASONS: [&str; 4] = [
    "backendError",
    "internalError",
    "rateLimitExceeded",
    "tableUnavailable",
];

/// Where access tokens come from.
#[derive(Clone)]
pub enum Tokens {
    /// No Authorization header.
    None,
    /// A fixed token.
    Static(String),
    /// yup-oauth2 (service account or application default credentials), which caches and
    /// refreshes tokens.
    Google(Arc<yup_oauth2::authenticator::DefaultAuthenticator>),
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Tokens::None => "Tokens::None",
            Tokens::Static(_) => "Tokens::Static(..)",
            Tokens::Google(_) => "Tokens::Google(..)",
        })
    }
}

impl Tokens {
    /// Builds the token source for the configuration (reads key files now, so a bad path is a
    /// startup error).
    pub async fn from_config(cfg: &BigQueryConfig) -> Result<Self, SinkError> {
        match cfg.auth {
            AuthMethod::None => Ok(Tokens::None),
            AuthMethod::Token => Ok(Tokens::Static(cfg.token.clone().unwrap_or_default())),
            AuthMethod::ServiceAccount => {
                let path = cfg.credentials.clone().unwrap_or_default();
                let key = yup_oauth2::read_service_account_key(&path)
                    .await
                    .map_err(|e| {
                        SinkError::Config(format!(
                            "sink.bigquery.credentials {}: {e}",
                            path.display()
                        ))
                    })?;
                let auth = yup_oauth2::ServiceAccountAuthenticator::builder(key)
                    .build()
                    .await
                    .map_err(|e| SinkError::Config(format!("service account: {e}")))?;
                Ok(Tokens::Google(Arc::new(auth)))
            }
            AuthMethod::ApplicationDefault => {
                use yup_oauth2::authenticator::ApplicationDefaultCredentialsTypes as Adc;
                let opts = yup_oauth2::ApplicationDefaultCredentialsFlowOpts::default();
                let auth =
                    match yup_oauth2::ApplicationDefaultCredentialsAuthenticator::builder(opts)
                        .await
                    {
                        Adc::InstanceMetadata(b) => b.build().await,
                        Adc::ServiceAccount(b) => b.build().await,
                    }
                    .map_err(|e| {
                        SinkError::Config(format!("application default credentials: {e}"))
                    })?;
                Ok(Tokens::Google(Arc::new(auth)))
            }
        }
    }

    /// The current token, if any.
    pub async fn token(&self) -> Result<Option<String>, Failure> {
        match self {
            Tokens::None => Ok(None),
            Tokens::Static(t) => Ok(Some(t.clone())),
            Tokens::Google(a) => match a.token(&[SCOPE]).await {
                Ok(t) => Ok(t.token().map(str::to_string)),
                // Token endpoint trouble is transient as far as we can tell; retry it.
                Err(e) => Err(Failure::retry("auth", format!("access token: {e}"), None)),
            },
        }
    }
}

/// BigQuery's error body: `{"error":{"code","message","errors":[{"reason","message"}],"status"}}`.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
    #[serde(default)]
    errors: Vec<ErrorItem>,
    #[serde(default)]
    status: String,
}

#[derive(Debug, Deserialize)]
struct ErrorItem {
    #[serde(default)]
    reason: String,
}

/// Sends one insertAll request and classifies the answer.
pub async fn insert_all(
    http: &reqwest::Client,
    tokens: &Tokens,
    url: &str,
    body: Vec<u8>,
    gzip: bool,
    timeout: Duration,
) -> Result<TableDataInsertAllResponse, Failure> {
    let token = tokens.token().await?;
    let mut req = http
        .post(url)
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    if gzip {
        req = req
            .header(reqwest::header::CONTENT_ENCODING, "gzip")
            .body(http::gzip(&body));
    } else {
        req = req.body(body);
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return Err(transport(e)),
    };
    let status = resp.status();
    let retry_after = http::retry_after(resp.headers());
    let bytes = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return Err(transport(e)),
    };
    if status.is_success() {
        // The official client's model, so the wire format is the documented one.
        return serde_json::from_slice::<TableDataInsertAllResponse>(&bytes).map_err(|e| {
            Failure::retry(
                "bad_response",
                format!("HTTP {status}: unreadable insertAll response: {e}"),
                retry_after,
            )
        });
    }
    Err(classify(status.as_u16(), &bytes, retry_after))
}

fn transport(e: reqwest::Error) -> Failure {
    let kind = http::transport_kind(&e);
    // Connection refused/reset, timeouts, dropped connections: all worth another try.
    Failure::retry(kind, format!("{kind} error: {e}"), None)
}

/// Classifies a non-2xx answer. Unlike the official client (which loses the status when the body
/// is not JSON), the status is always kept: a proxy's plain-text 502 is retried like BigQuery's
/// own 503.
pub fn classify(status: u16, body: &[u8], retry_after: Option<Duration>) -> Failure {
    let parsed = serde_json::from_slice::<ErrorBody>(body).ok();
    let reasons: Vec<&str> = parsed
        .as_ref()
        .map(|b| b.error.errors.iter().map(|e| e.reason.as_str()).collect())
        .unwrap_or_default();
    let message = match &parsed {
        Some(b) => format!(
            "HTTP {status} {} ({}): {}",
            b.error.status,
            reasons.join(","),
            b.error.message
        ),
        None => format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)]).trim()
        ),
    };
    let _ = parsed.as_ref().map(|b| b.error.code);
    let retryable_status = http::retryable_status(status);
    let retryable_reason = reasons.iter().any(|r| RETRYABLE_REASONS.contains(r));
    let kind = match status {
        429 => "rate_limited",
        s if s >= 500 => "http_5xx",
        _ => "http_4xx",
    };
    let mut f = if retryable_status || retryable_reason {
        Failure::retry(kind, message, retry_after)
    } else {
        Failure::fatal(kind, message)
    };
    f.not_found = status == 404 || reasons.contains(&"notFound");
    f
}
