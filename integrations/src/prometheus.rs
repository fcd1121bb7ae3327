//! Prometheus HTTP API: instant queries, and the single number an SLO query yields.
//!
//! Uses `reqwest` directly (not a Prometheus client crate): one HTTP stack, with its
//! timeouts and TLS, for Prometheus, Alertmanager and webhooks alike, and the small part
//! of the API havoc needs (`/api/v1/query`) is easy to decode exactly.

use std::{collections::BTreeMap, time::Duration};

use serde::Deserialize;
use url::Url;

use crate::{Error, http};

/// A client of one Prometheus (or anything serving its query API). Cheap to clone.
#[derive(Clone)]
pub struct Client {
    base: Url,
    http: reqwest::Client,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    /// The URL without credentials or query.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("prometheus::Client")
            .field("url", &http::display(&self.base))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The result of an instant query.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryValue {
    /// An instant vector (possibly empty: no data).
    Vector(Vec<Sample>),
    /// A scalar, as `scalar(...)` or a number literal yields.
    Scalar { timestamp: f64, value: f64 },
    /// A range vector (`metric[5m]`), which is not a number.
    Matrix(Vec<Series>),
    /// A string literal.
    String { timestamp: f64, value: String },
}

/// One sample of an instant vector. `timestamp` is Unix seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub metric: BTreeMap<String, String>,
    pub timestamp: f64,
    pub value: f64,
}

/// One series of a range vector: `(timestamp, value)` pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub metric: BTreeMap<String, String>,
    pub values: Vec<(f64, f64)>,
}

impl QueryValue {
    /// The `resultType` Prometheus gave.
    pub fn result_type(&self) -> &'static str {
        match self {
            QueryValue::Vector(_) => "vector",
            QueryValue::Scalar { .. } => "scalar",
            QueryValue::Matrix(_) => "matrix",
            QueryValue::String { .. } => "string",
        }
    }

    /// The single number of the result: a scalar, or a vector of exactly one sample.
    /// `Ok(None)` for an empty vector ("no data"); [`Error::Ambiguous`] for more than one
    /// sample; [`Error::NotANumber`] for a matrix or a string. NaN stays NaN.
    pub fn single_number(&self) -> Result<Option<f64>, Error> {
        match self {
            QueryValue::Scalar { value, .. } => Ok(Some(*value)),
            QueryValue::Vector(samples) => match samples.as_slice() {
                [] => Ok(None),
                [one] => Ok(Some(one.value)),
                many => Err(Error::Ambiguous(many.len())),
            },
            other => Err(Error::NotANumber {
                result_type: other.result_type().to_string(),
            }),
        }
    }
}

impl Client {
    /// A client of the Prometheus at `base_url` (`http://prometheus:9090`, a path prefix is
    /// kept); every call fails after `timeout`.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, Error> {
        Ok(Client {
            base: http::parse_url(base_url)?,
            http: http::client(timeout)?,
            timeout,
        })
    }

    /// Evaluates `promql` now (`GET /api/v1/query`). A query Prometheus refuses or fails
    /// (`"status": "error"`, whatever the HTTP status) is [`Error::Query`].
    pub async fn instant_query(&self, promql: &str) -> Result<QueryValue, Error> {
        let url = http::endpoint(&self.base, "api/v1/query");
        let shown = http::display(&url);
        let response = self
            .http
            .get(url)
            .query(&[("query", promql)])
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| http::transport_error(e, shown.clone(), self.timeout))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| http::transport_error(e, shown.clone(), self.timeout))?;
        parse_query_response(status, &body, &shown)
    }

    /// The single number `promql` yields now (see [`QueryValue::single_number`]): what an
    /// SLO objective is compared with. `Ok(None)` means no data.
    pub async fn slo_value(&self, promql: &str) -> Result<Option<f64>, Error> {
        self.instant_query(promql).await?.single_number()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    status: String,
    data: Option<Data>,
    error_type: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct RawSample {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: Option<(f64, String)>,
}

#[derive(Deserialize)]
struct RawSeries {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

/// Decodes an answer of `/api/v1/query` given its HTTP status and body. Whatever an
/// error quotes of the answer is sanitized and short; a longer excerpt goes to the debug
/// log.
fn parse_query_response(status: u16, body: &[u8], url: &str) -> Result<QueryValue, Error> {
    let result = decode_query_response(status, body, url);
    if result.is_err() {
        tracing::debug!(url, status, body = %http::log_excerpt(body), "unexpected Prometheus answer");
    }
    result
}

fn decode_query_response(status: u16, body: &[u8], url: &str) -> Result<QueryValue, Error> {
    let bad = |reason: String| Error::BadResponse {
        url: url.to_string(),
        reason: http::sanitize(&reason, http::REASON_MAX),
    };
    let http_error = || Error::Http {
        url: url.to_string(),
        status,
        reason: http::body_reason(status, body),
    };
    let envelope: Envelope = match serde_json::from_slice(body) {
        Ok(envelope) => envelope,
        // Not the API's JSON: a proxy's error page, say.
        Err(_) if !(200..300).contains(&status) => return Err(http_error()),
        Err(e) => return Err(bad(format!("not a query answer: {e}"))),
    };
    if envelope.status != "success" {
        let error_type = envelope.error_type.unwrap_or_else(|| "unknown".into());
        let message = envelope.error.unwrap_or_else(|| format!("HTTP {status}"));
        return Err(Error::Query {
            error_type: http::sanitize(&error_type, 40),
            message: http::sanitize(&message, http::REASON_MAX),
        });
    }
    if !(200..300).contains(&status) {
        return Err(http_error());
    }
    let data = envelope
        .data
        .ok_or_else(|| bad("success without data".into()))?;
    let decode = |what: &str, e: serde_json::Error| bad(format!("{what} result: {e}"));
    match data.result_type.as_str() {
        "vector" => {
            let raw: Vec<RawSample> =
                serde_json::from_value(data.result).map_err(|e| decode("vector", e))?;
            raw.into_iter()
                .map(|s| {
                    let (timestamp, value) = s.value.ok_or_else(|| {
                        bad("a sample has no scalar value (a native histogram?)".into())
                    })?;
                    Ok(Sample {
                        metric: s.metric,
                        timestamp,
                        value: parse_number(&value).map_err(bad)?,
                    })
                })
                .collect::<Result<_, _>>()
                .map(QueryValue::Vector)
        }
        "scalar" => {
            let (timestamp, value): (f64, String) =
                serde_json::from_value(data.result).map_err(|e| decode("scalar", e))?;
            Ok(QueryValue::Scalar {
                timestamp,
                value: parse_number(&value).map_err(bad)?,
            })
        }
        "matrix" => {
            let raw: Vec<RawSeries> =
                serde_json::from_value(data.result).map_err(|e| decode("matrix", e))?;
            raw.into_iter()
                .map(|s| {
                    let values = s
                        .values
                        .into_iter()
                        .map(|(t, v)| parse_number(&v).map(|v| (t, v)))
                        .collect::<Result<_, _>>()
                        .map_err(bad)?;
                    Ok(Series {
                        metric: s.metric,
                        values,
                    })
                })
                .collect::<Result<_, _>>()
                .map(QueryValue::Matrix)
        }
        "string" => {
            let (timestamp, value): (f64, String) =
                serde_json::from_value(data.result).map_err(|e| decode("string", e))?;
            Ok(QueryValue::String { timestamp, value })
        }
        other => Err(bad(format!("unknown resultType {other:?}"))),
    }
}

/// Prometheus writes sample values as strings: `"1"`, `"0.25"`, `"NaN"`, `"+Inf"`, `"-Inf"`.
fn parse_number(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .map_err(|_| format!("sample value {text:?} is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_server::{Reply, Server};

    const URL: &str = "http://prom:9090/api/v1/query";

    fn parse(status: u16, body: &str) -> Result<QueryValue, Error> {
        parse_query_response(status, body.as_bytes(), URL)
    }

    #[test]
    fn a_vector_of_one_sample_is_its_number() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"namespace":"go-demo-8"},"value":[1774692000.123,"5"]}]}}"#;
        let value = parse(200, body).expect("vector");
        let QueryValue::Vector(samples) = &value else {
            panic!("expected a vector, got {value:?}")
        };
        assert_eq!(samples[0].metric["namespace"], "go-demo-8");
        assert_eq!(samples[0].timestamp, 1774692000.123);
        assert_eq!(value.single_number().expect("one sample"), Some(5.0));
    }

    #[test]
    fn a_scalar_is_its_number() {
        let body =
            r#"{"status":"success","data":{"resultType":"scalar","result":[1774692000,"0.0125"]}}"#;
        let value = parse(200, body).expect("scalar");
        assert_eq!(
            value,
            QueryValue::Scalar {
                timestamp: 1774692000.0,
                value: 0.0125
            }
        );
        assert_eq!(value.single_number().expect("scalar"), Some(0.0125));
    }

    #[test]
    fn an_empty_vector_is_no_data() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(
            parse(200, body)
                .expect("empty")
                .single_number()
                .expect("no data"),
            None
        );
    }

    #[test]
    fn several_samples_are_ambiguous() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"pod":"a"},"value":[1,"1"]},{"metric":{"pod":"b"},"value":[1,"2"]},
            {"metric":{"pod":"c"},"value":[1,"3"]}]}}"#;
        let err = parse(200, body)
            .expect("vector")
            .single_number()
            .expect_err("ambiguous");
        assert!(matches!(err, Error::Ambiguous(3)), "{err:?}");
        assert_eq!(err.kind(), "ambiguous");
    }

    #[test]
    fn special_values_parse_and_nan_stays_nan() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}"#;
        let nan = parse(200, body).expect("nan").single_number().expect("one");
        assert!(nan.is_some_and(f64::is_nan));
        for (text, want) in [("+Inf", f64::INFINITY), ("-Inf", f64::NEG_INFINITY)] {
            assert_eq!(parse_number(text), Ok(want));
        }
        assert!(parse_number("many").is_err());
    }

    #[test]
    fn an_error_answer_is_a_query_error() {
        let body = r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:5: parse error: unexpected \")\""}"#;
        let err = parse(400, body).expect_err("bad query");
        match &err {
            Error::Query {
                error_type,
                message,
            } => {
                assert_eq!(error_type, "bad_data");
                assert!(message.contains("parse error"), "{message}");
            }
            other => panic!("expected a query error, got {other:?}"),
        }
        assert_eq!(err.kind(), "query");
        let timeout = r#"{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}"#;
        assert!(matches!(parse(503, timeout), Err(Error::Query { .. })));
    }

    #[test]
    fn errors_quote_upstream_text_short_and_clean() {
        // A proxy's page, a huge Prometheus message and a huge value: what Display shows
        // is bounded and has no control characters.
        let page = format!(
            "<html>\n<body>\u{1b}[2J{}</body></html>",
            "x".repeat(10_000)
        );
        let message = format!(
            "{{\"status\":\"error\",\"errorType\":\"bad_data\",\"error\":\"parse error\\n{}\"}}",
            "y".repeat(10_000)
        );
        let value = format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[1,"{}"]}}]}}}}"#,
            "z".repeat(10_000)
        );
        let errors = [
            parse(502, &page).expect_err("page"),
            parse(400, &message).expect_err("message"),
            parse(200, &value).expect_err("value"),
            parse(200, &format!("\u{7}{}", "w".repeat(10_000))).expect_err("garbage"),
        ];
        let kinds: Vec<_> = errors.iter().map(Error::kind).collect();
        assert_eq!(kinds, ["http_5xx", "query", "bad_response", "bad_response"]);
        for e in &errors {
            let shown = e.to_string();
            assert!(
                shown.chars().count() <= URL.len() + 260,
                "{} chars: {shown}",
                shown.chars().count()
            );
            assert!(!shown.chars().any(char::is_control), "{shown:?}");
        }
        assert!(
            errors[0]
                .to_string()
                .starts_with(&format!("{URL}: HTTP 502: <html> <body> [2Jxxx")),
            "{}",
            errors[0]
        );
        assert!(
            errors[1].to_string().contains("parse error y"),
            "{}",
            errors[1]
        );
    }

    #[tokio::test]
    async fn a_failing_prometheus_is_reported_short_and_clean() {
        let server = Server::start(|n, _| match n {
            0 => Reply::text(502, &format!("<html>\r\n{}</html>", "x".repeat(10_000))),
            _ => Reply::json(
                400,
                serde_json::json!({"status": "error", "errorType": "bad_data",
                    "error": format!("1:3: parse error:\n\u{1b}[2J{}", "q".repeat(10_000))}),
            ),
        })
        .await;
        let client =
            Client::new(&format!("{}/prefix", server.url), Duration::from_secs(5)).expect("client");
        let e = client.slo_value("up").await.expect_err("502");
        assert_eq!(e.kind(), "http_5xx");
        let shown = e.to_string();
        let want = format!("{}/prefix/api/v1/query: HTTP 502: <html> xxx", server.url);
        assert!(shown.starts_with(&want), "{shown}");
        assert!(shown.chars().count() < 300, "{}", shown.len());
        let r = &server.requests()[0];
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("GET", "/prefix/api/v1/query?query=up")
        );
        assert_eq!(r.header("accept"), Some("application/json"));
        assert!(r.body.is_empty());
        let e = client.slo_value("up(").await.expect_err("bad query");
        assert_eq!(e.kind(), "query");
        let shown = e.to_string();
        assert!(
            shown.starts_with("query failed (bad_data): 1:3: parse error: [2Jqqq"),
            "{shown}"
        );
        assert!(
            shown.chars().count() < 250 && !shown.chars().any(char::is_control),
            "{shown:?}"
        );
    }

    #[tokio::test]
    async fn transport_errors_hide_credentials_and_query() {
        // Nothing listens on port 9 of loopback: connection refused, at once.
        let client = Client::new(
            "http://prom-user:hunter2@127.0.0.1:9/prefix?token=abc123",
            Duration::from_secs(5),
        )
        .expect("client");
        let e = client.slo_value("up").await.expect_err("refused");
        assert_eq!(e.kind(), "connect", "{e:?}");
        let shown = format!("{e} {e:?}");
        assert!(
            shown.contains("http://127.0.0.1:9/prefix/api/v1/query"),
            "{shown}"
        );
        for secret in ["prom-user", "hunter2", "abc123"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }

    #[test]
    fn debug_hides_credentials_and_query() {
        let client = Client::new(
            "https://user:hunter2@prom.example/prefix?token=abc",
            Duration::from_secs(1),
        )
        .expect("client");
        let shown = format!("{client:?}");
        assert!(shown.contains("https://prom.example/prefix"), "{shown}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("abc"),
            "{shown}"
        );
    }

    #[test]
    fn matrices_strings_and_garbage() {
        let body = r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"job":"x"},"values":[[1,"1"],[2,"2"]]}]}}"#;
        let value = parse(200, body).expect("matrix");
        assert_eq!(value.result_type(), "matrix");
        assert_eq!(
            value.single_number().expect_err("matrix").kind(),
            "not_a_number"
        );
        let body = r#"{"status":"success","data":{"resultType":"string","result":[1,"hello"]}}"#;
        assert_eq!(parse(200, body).expect("string").result_type(), "string");

        assert_eq!(
            parse(502, "<html>bad gateway</html>")
                .expect_err("html")
                .kind(),
            "http_5xx"
        );
        assert_eq!(
            parse(200, "<html>").expect_err("html").kind(),
            "bad_response"
        );
        let histogram = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"histogram":[1,{}]}]}}"#;
        assert_eq!(
            parse(200, histogram).expect_err("histogram").kind(),
            "bad_response"
        );
    }
}
