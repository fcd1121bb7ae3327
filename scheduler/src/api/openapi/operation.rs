//! The description of one endpoint as the document gives it: an [`Operation`] (built in
//! `endpoints()`, `api/mod.rs`: path, method, summary, parameters, body, answers, access)
//! and the error answers several share ([`ErrorAnswer`]), each written out as its
//! OpenAPI object.

use axum::http::Method;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::{Map, Value, json};

use super::{SchemaFn, query_params};
use crate::api::limits;

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Metrics and probes: always open.
    Open,
    /// `GET /api/v1/...`: open unless `server.readRequiresToken`, then the bearer token.
    Read,
    /// The mutating endpoints: the bearer token.
    Token,
}

/// An error answer that operations share (`components.responses`), with its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorAnswer {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    RequestTimeout,
    PayloadTooLarge,
    StateUnavailable,
    HistoryUnavailable,
}

impl ErrorAnswer {
    pub(super) const ALL: [ErrorAnswer; 8] = [
        ErrorAnswer::BadRequest,
        ErrorAnswer::Unauthorized,
        ErrorAnswer::Forbidden,
        ErrorAnswer::NotFound,
        ErrorAnswer::RequestTimeout,
        ErrorAnswer::PayloadTooLarge,
        ErrorAnswer::StateUnavailable,
        ErrorAnswer::HistoryUnavailable,
    ];

    fn status(self) -> u16 {
        match self {
            ErrorAnswer::BadRequest => 400,
            ErrorAnswer::Unauthorized => 401,
            ErrorAnswer::Forbidden => 403,
            ErrorAnswer::NotFound => 404,
            ErrorAnswer::RequestTimeout => 408,
            ErrorAnswer::PayloadTooLarge => 413,
            ErrorAnswer::StateUnavailable | ErrorAnswer::HistoryUnavailable => 503,
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            ErrorAnswer::BadRequest => "BadRequest",
            ErrorAnswer::Unauthorized => "Unauthorized",
            ErrorAnswer::Forbidden => "Forbidden",
            ErrorAnswer::NotFound => "NotFound",
            ErrorAnswer::RequestTimeout => "RequestTimeout",
            ErrorAnswer::PayloadTooLarge => "PayloadTooLarge",
            ErrorAnswer::StateUnavailable => "StateUnavailable",
            ErrorAnswer::HistoryUnavailable => "HistoryUnavailable",
        }
    }

    /// The response object, its body an `Error` (`error`: its `$ref`).
    pub(super) fn response(self, error: &Schema) -> Value {
        let description = match self {
            ErrorAnswer::BadRequest => "Invalid input: the message says what.".to_string(),
            ErrorAnswer::Unauthorized => "Missing or wrong bearer token.".to_string(),
            ErrorAnswer::Forbidden => {
                "No `server.token` is configured: mutating endpoints are off.".to_string()
            }
            ErrorAnswer::NotFound => "No policy of that name.".to_string(),
            ErrorAnswer::RequestTimeout => format!(
                "The request (its body) was not completed within the request timeout ({} s).",
                limits::REQUEST_TIMEOUT.as_secs()
            ),
            ErrorAnswer::PayloadTooLarge => format!(
                "The body is larger than {} KiB.",
                limits::MAX_BODY_BYTES / 1024
            ),
            ErrorAnswer::StateUnavailable => {
                "The shared pause state cannot be written right now; nothing changed.".to_string()
            }
            ErrorAnswer::HistoryUnavailable => {
                "The experiment history in the cluster cannot be read right now.".to_string()
            }
        };
        let mut r = json!({
            "description": description,
            "content": {"application/json": {"schema": error}},
        });
        if self == ErrorAnswer::Unauthorized {
            r["headers"] = json!({"WWW-Authenticate": {
                "description": "Always `Bearer`.",
                "schema": {"type": "string", "const": "Bearer"},
            }});
        }
        r
    }

    fn reference(self) -> Value {
        json!({"$ref": format!("#/components/responses/{}", self.name())})
    }
}

/// An answer of an operation: its own, or a shared one.
#[derive(Debug)]
enum Reply {
    Own(Answer),
    Shared(ErrorAnswer),
}

/// An answer of an operation's own.
#[derive(Debug)]
struct Answer {
    description: &'static str,
    /// Media type and schema.
    content: Vec<(&'static str, SchemaFn)>,
    /// Header name and description (a string).
    headers: Vec<(&'static str, &'static str)>,
    /// Link name and link object.
    links: Vec<(&'static str, Value)>,
}

/// Where a parameter comes from.
#[derive(Debug)]
enum Params {
    /// A path segment: name, description (a string).
    Path(&'static str, &'static str),
    /// The fields of a query type (`#[schemars(inline)]`), one parameter each.
    Query(SchemaFn),
}

/// What the document says of one endpoint: built in `endpoints()` (`api/mod.rs`).
#[derive(Debug)]
pub struct Operation {
    pub method: Method,
    pub path: &'static str,
    id: &'static str,
    tag: &'static str,
    summary: &'static str,
    /// Paragraphs.
    description: Vec<&'static str>,
    access: Access,
    params: Vec<Params>,
    /// The name of its (optional) JSON body's schema, and the schema.
    body: Option<(String, SchemaFn)>,
    answers: Vec<(u16, Reply)>,
}

impl Operation {
    fn new(
        method: Method,
        path: &'static str,
        id: &'static str,
        tag: &'static str,
        summary: &'static str,
        access: Access,
    ) -> Self {
        let op = Operation {
            method,
            path,
            id,
            tag,
            summary,
            description: Vec::new(),
            access,
            params: Vec::new(),
            body: None,
            answers: Vec::new(),
        };
        let implied: &[ErrorAnswer] = match access {
            Access::Open => &[],
            Access::Read => &[ErrorAnswer::Unauthorized],
            Access::Token => &[ErrorAnswer::Unauthorized, ErrorAnswer::Forbidden],
        };
        op.errors(implied)
    }

    /// `GET`, for Kubernetes probes and Prometheus: always open.
    pub fn probe(path: &'static str, id: &'static str, summary: &'static str) -> Self {
        Self::new(Method::GET, path, id, "probes", summary, Access::Open)
    }

    /// `GET /api/v1/...`: open unless `server.readRequiresToken` (then `401` without the
    /// token).
    pub fn read(path: &'static str, id: &'static str, summary: &'static str) -> Self {
        Self::new(Method::GET, path, id, "api", summary, Access::Read)
    }

    /// `POST /api/v1/...`: needs the bearer token (`401`), and a configured one (`403`).
    pub fn write(path: &'static str, id: &'static str, summary: &'static str) -> Self {
        Self::new(Method::POST, path, id, "api", summary, Access::Token)
    }

    /// A paragraph of the description.
    pub fn describe(mut self, text: &'static str) -> Self {
        self.description.push(text);
        self
    }

    /// A string path parameter.
    pub fn path(mut self, name: &'static str, description: &'static str) -> Self {
        self.params.push(Params::Path(name, description));
        self
    }

    /// The query parameters: the fields of `Q`.
    pub fn query<Q: JsonSchema>(mut self) -> Self {
        self.params.push(Params::Query(|g| g.subschema_for::<Q>()));
        self
    }

    /// An optional JSON body of type `B` (`components.requestBodies`).
    pub fn body<B: JsonSchema>(mut self) -> Self {
        self.body = Some((B::schema_name().into_owned(), |g| g.subschema_for::<B>()));
        self
    }

    /// An answer with these media types and schemas.
    pub fn answer(
        mut self,
        status: u16,
        description: &'static str,
        content: Vec<(&'static str, SchemaFn)>,
    ) -> Self {
        self.answers.push((
            status,
            Reply::Own(Answer {
                description,
                content,
                headers: Vec::new(),
                links: Vec::new(),
            }),
        ));
        self
    }

    /// A JSON answer of type `T`.
    pub fn json<T: JsonSchema>(self, status: u16, description: &'static str) -> Self {
        self.answer(
            status,
            description,
            vec![("application/json", |g| g.subschema_for::<T>())],
        )
    }

    /// A `text/plain` answer.
    pub fn text(self, status: u16, description: &'static str) -> Self {
        self.answer(
            status,
            description,
            vec![("text/plain", |_| json_schema!({"type": "string"}))],
        )
    }

    /// Error answers that several operations share.
    pub fn errors(mut self, shared: &[ErrorAnswer]) -> Self {
        self.answers
            .extend(shared.iter().map(|s| (s.status(), Reply::Shared(*s))));
        self
    }

    fn last(&mut self) -> &mut Answer {
        match self.answers.last_mut() {
            Some((_, Reply::Own(a))) => a,
            _ => panic!(
                "{} {}: a header or link before its answer",
                self.method, self.path
            ),
        }
    }

    /// A string header of the last answer.
    pub fn header(mut self, name: &'static str, description: &'static str) -> Self {
        self.last().headers.push((name, description));
        self
    }

    /// A link of the last answer.
    pub fn link(mut self, name: &'static str, link: Value) -> Self {
        self.last().links.push((name, link));
        self
    }

    /// The operation object. Answers' schemas come from `answers`, the parameters' and the
    /// body's from `requests`; bodies join `bodies` (`components.requestBodies`).
    pub(super) fn to_json(
        &self,
        answers: &mut SchemaGenerator,
        requests: &mut SchemaGenerator,
        bodies: &mut Map<String, Value>,
    ) -> Value {
        let mut op = json!({
            "operationId": self.id,
            "tags": [self.tag],
            "summary": self.summary,
        });
        if !self.description.is_empty() {
            op["description"] = self.description.join("\n\n").into();
        }
        match self.access {
            Access::Open => {}
            Access::Read => op["security"] = json!([{}, {"bearerAuth": []}]),
            Access::Token => op["security"] = json!([{"bearerAuth": []}]),
        }
        let params: Vec<Value> = self
            .params
            .iter()
            .flat_map(|p| match p {
                Params::Path(name, description) => vec![json!({
                    "name": name,
                    "in": "path",
                    "required": true,
                    "description": description,
                    "schema": {"type": "string"},
                })],
                Params::Query(schema) => query_params(&schema(requests)),
            })
            .collect();
        if !params.is_empty() {
            op["parameters"] = params.into();
        }
        if let Some((name, schema)) = &self.body {
            bodies.insert(
                name.clone(),
                json!({
                    "required": false,
                    "content": {"application/json": {"schema": schema(requests)}},
                }),
            );
            op["requestBody"] = json!({"$ref": format!("#/components/requestBodies/{name}")});
        }
        let mut responses = Map::new();
        for (status, answer) in &self.answers {
            let r = match answer {
                Reply::Shared(shared) => shared.reference(),
                Reply::Own(a) => a.to_json(answers),
            };
            let previous = responses.insert(status.to_string(), r);
            assert!(
                previous.is_none(),
                "{} {}: two answers with status {status}",
                self.method,
                self.path
            );
        }
        op["responses"] = responses.into();
        op
    }
}

impl Answer {
    pub(super) fn to_json(&self, g: &mut SchemaGenerator) -> Value {
        let content: Map<String, Value> = self
            .content
            .iter()
            .map(|(media, schema)| (media.to_string(), json!({"schema": schema(g)})))
            .collect();
        let mut r = json!({"description": self.description, "content": content});
        if !self.headers.is_empty() {
            r["headers"] = self
                .headers
                .iter()
                .map(|(name, description)| {
                    (
                        name.to_string(),
                        json!({"description": description, "schema": {"type": "string"}}),
                    )
                })
                .collect::<Map<_, _>>()
                .into();
        }
        if !self.links.is_empty() {
            r["links"] = self
                .links
                .iter()
                .map(|(name, link)| (name.to_string(), link.clone()))
                .collect::<Map<_, _>>()
                .into();
        }
        r
    }
}
