//! Grafana annotations through Grafana's HTTP API (the annotations API, `/api/annotations`,
//! served by every Grafana since 4.6 and still by Grafana 12 and 13):
//!
//! - [`Client::create`]: `POST /api/annotations` with `time` and `timeEnd` (Unix
//!   milliseconds; a region when they differ), `tags`, `text` and, when configured,
//!   `dashboardUID` (the annotation then belongs to that dashboard; without it, it is an
//!   organization annotation that dashboards show by tag). Grafana answers
//!   `{"message": "Annotation added", "id": N}`.
//! - [`Client::update`]: `PATCH /api/annotations/{id}` with the fields that change
//!   (`timeEnd`, `tags`, `text`); Grafana answers `{"message": "Annotation patched"}`.
//!
//! Requests carry `Authorization: Bearer <token>` (a service account token), a timeout,
//! and JSON. Failures are [`NotifyError`]s, like notifications: 429, 5xx, network errors
//! and timeouts are retryable, other statuses (401 bad token, 403 missing permission, 404
//! unknown annotation or dashboard) are not. The token never appears in an error or in
//! `Debug`; errors name only the URL's scheme, host, port and path.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::{Error, NotifyError, SecretString, http};

/// A new annotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewAnnotation {
    #[serde(rename = "dashboardUID", skip_serializing_if = "Option::is_none")]
    pub dashboard_uid: Option<String>,
    /// Unix milliseconds.
    pub time: i64,
    /// Unix milliseconds; equal to `time` for a point, later for a region.
    pub time_end: i64,
    pub tags: Vec<String>,
    pub text: String,
}

/// The fields of an annotation to change; absent ones stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AnnotationPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_end: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Created {
    id: i64,
}

/// A Grafana annotations client. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    base: Url,
    token: SecretString,
    http: reqwest::Client,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("grafana::Client")
            .field("url", &http::display(&self.base))
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for the Grafana at `url` (a path prefix, as behind a reverse proxy, is
    /// kept); every request fails after `timeout`.
    pub fn new(url: &str, token: SecretString, timeout: Duration) -> Result<Self, Error> {
        Ok(Client {
            base: http::parse_url(url)?,
            token,
            http: http::client(timeout)?,
        })
    }

    fn target(url: &Url) -> String {
        format!("grafana {}", http::display(url))
    }

    async fn send(
        &self,
        method: reqwest::Method,
        url: Url,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, NotifyError> {
        let target = Self::target(&url);
        let response = self
            .http
            .request(method, url)
            .bearer_auth(self.token.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| http::notify_transport_error(e, &target))?;
        let status = response.status().as_u16();
        let retry_after = http::retry_after_header(&response);
        let answer = response
            .bytes()
            .await
            .map_err(|e| http::notify_transport_error(e, &target))?
            .to_vec();
        http::classify_status(
            status,
            retry_after.as_deref(),
            &answer,
            &target,
            &[self.token.expose()],
        )?;
        Ok(answer)
    }

    /// Creates an annotation; its id.
    pub async fn create(&self, annotation: &NewAnnotation) -> Result<i64, NotifyError> {
        let url = http::endpoint(&self.base, "api/annotations");
        let body = serde_json::to_vec(annotation)
            .map_err(|e| NotifyError::permanent(format!("cannot encode: {e}")))?;
        let answer = self.send(reqwest::Method::POST, url.clone(), body).await?;
        serde_json::from_slice::<Created>(&answer)
            .map(|c| c.id)
            .map_err(|_| {
                NotifyError::permanent(format!(
                    "{}: unexpected answer (no annotation id): {}",
                    Self::target(&url),
                    http::body_reason(200, &answer)
                ))
            })
    }

    /// Changes the annotation `id`.
    pub async fn update(&self, id: i64, patch: &AnnotationPatch) -> Result<(), NotifyError> {
        let url = http::endpoint(&self.base, &format!("api/annotations/{id}"));
        let body = serde_json::to_vec(patch)
            .map_err(|e| NotifyError::permanent(format!("cannot encode: {e}")))?;
        self.send(reqwest::Method::PATCH, url, body).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::test_server::{Reply, Server};

    fn client(url: &str) -> Client {
        Client::new(
            url,
            SecretString::new("glsa_SECRET-token"),
            Duration::from_secs(5),
        )
        .expect("client")
    }

    fn annotation() -> NewAnnotation {
        NewAnnotation {
            dashboard_uid: Some("havoc".into()),
            time: 1_774_692_000_000,
            time_end: 1_774_692_090_000,
            tags: vec!["havoc".into(), "cluster:prod-eu".into()],
            text: "podDelete by policy web".into(),
        }
    }

    #[tokio::test]
    async fn creates_and_patches_as_the_api_documents() {
        let server = Server::start(|n, _| {
            if n == 0 {
                Reply::json(200, json!({"message": "Annotation added", "id": 42}))
            } else {
                Reply::json(200, json!({"message": "Annotation patched"}))
            }
        })
        .await;
        // A path prefix (Grafana behind a proxy at /grafana) is kept.
        let c = client(&format!("{}/grafana/", server.url));
        let id = c.create(&annotation()).await.expect("created");
        assert_eq!(id, 42);
        c.update(
            id,
            &AnnotationPatch {
                time_end: Some(1_774_692_100_000),
                tags: Some(vec!["verdict:passed".into()]),
                ..AnnotationPatch::default()
            },
        )
        .await
        .expect("patched");
        let requests = server.requests();
        assert_eq!(requests.len(), 2);
        let post = &requests[0];
        assert_eq!(
            (post.method.as_str(), post.path.as_str()),
            ("POST", "/grafana/api/annotations")
        );
        assert_eq!(
            post.header("authorization"),
            Some("Bearer glsa_SECRET-token")
        );
        assert_eq!(post.header("content-type"), Some("application/json"));
        assert_eq!(
            post.json(),
            json!({
                "dashboardUID": "havoc",
                "time": 1_774_692_000_000_i64,
                "timeEnd": 1_774_692_090_000_i64,
                "tags": ["havoc", "cluster:prod-eu"],
                "text": "podDelete by policy web",
            })
        );
        let patch = &requests[1];
        assert_eq!(
            (patch.method.as_str(), patch.path.as_str()),
            ("PATCH", "/grafana/api/annotations/42")
        );
        assert_eq!(
            patch.json(),
            json!({"timeEnd": 1_774_692_100_000_i64, "tags": ["verdict:passed"]})
        );
        // No dashboard: an organization annotation, without the field.
        let org = NewAnnotation {
            dashboard_uid: None,
            ..annotation()
        };
        assert!(
            serde_json::to_value(&org)
                .expect("json")
                .get("dashboardUID")
                .is_none()
        );
    }

    #[tokio::test]
    async fn failures_are_classified_and_never_show_the_token() {
        let server = Server::start(|n, _| match n {
            0 => Reply::json(401, json!({"message": "invalid API key glsa_SECRET-token"})),
            1 => Reply::json(503, json!({"message": "down"})),
            2 => Reply::json(429, json!({})).header("Retry-After", "3"),
            _ => Reply::json(200, json!({"message": "no id"})),
        })
        .await;
        let c = client(&server.url);
        let e = c.create(&annotation()).await.expect_err("401");
        assert!(!e.is_retryable());
        let shown = format!("{e} {e:?} {c:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("HTTP 401"), "{shown}");
        assert!(
            c.create(&annotation())
                .await
                .expect_err("503")
                .is_retryable()
        );
        let e = c.create(&annotation()).await.expect_err("429");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        let e = c.create(&annotation()).await.expect_err("no id");
        assert!(e.reason().contains("no annotation id"), "{e}");
    }

    #[tokio::test]
    async fn a_grafana_that_does_not_answer_times_out_as_retryable() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let hold = tokio::spawn(async move {
            let (_sock, _) = listener.accept().await.expect("accept");
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let c =
            Client::new(&url, SecretString::new("t"), Duration::from_millis(200)).expect("client");
        let e = c.create(&annotation()).await.expect_err("timeout");
        assert!(e.is_retryable(), "{e}");
        assert!(e.reason().contains("timeout"), "{e}");
        hold.abort();
    }
}
