//! The Rakkr controller's recorder-node HTTP API, as the bridge calls it
//! for each linked node (see `shared/reference/rakkr-agent-http-api.md`).
//!
//! Blocking HTTP (ureq) on tokio's blocking pool: a call never holds an
//! async worker. The idle keep-alive is kept under the controller's 5 s
//! (it closes idle connections after 5 s).

use std::time::Duration;

use serde_json::Value;

/// The answer to "is this token node X's?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenVerdict {
    Valid,
    /// The token authenticates another node (403).
    OtherNode,
    /// Unknown or revoked (401 while `/readyz` says ready).
    Invalid,
    /// The controller could not say (down, 401 while not ready, network).
    Unavailable(String),
}

/// Idle keep-alive connections kept to the controller.
const IDLE_CONNECTIONS: usize = 64;

#[derive(Debug, Clone)]
pub struct RakkrApi {
    base: String,
    http: ureq::Agent,
    /// Our node id → the node's id in Rakkr, where they differ.
    ids: std::sync::Arc<std::collections::BTreeMap<String, String>>,
}

impl RakkrApi {
    /// `base`: the controller's URL (`http://rakkr-api:8787`), no path.
    pub fn new(base: &str) -> Self {
        let http = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .max_idle_age(Duration::from_secs(4))
            // NOTE: every node's calls go to one host; ureq keeps 3 idle
            // connections per host by default, so at a fleet's rate most
            // calls opened a new one (a TCP handshake each).
            .max_idle_connections(IDLE_CONNECTIONS)
            .max_idle_connections_per_host(IDLE_CONNECTIONS)
            .build()
            .into();
        Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
            ids: Default::default(),
        }
    }

    /// Maps our node ids to Rakkr's where they differ (the rest map one
    /// to one).
    pub fn with_node_ids(mut self, ids: std::collections::BTreeMap<String, String>) -> Self {
        self.ids = std::sync::Arc::new(ids);
        self
    }

    /// Node `ours` as Rakkr knows it.
    pub fn node_id<'a>(&'a self, ours: &'a str) -> &'a str {
        self.ids.get(ours).map_or(ours, String::as_str)
    }

    /// `/api/v1/nodes/<Rakkr's id of ours>/<rest>`.
    pub fn node_path(&self, ours: &str, rest: &str) -> String {
        format!("/api/v1/nodes/{}/{rest}", self.node_id(ours))
    }

    /// `method path` with the node's token and a JSON body: the status
    /// and the reply's JSON (`Null` when none).
    pub async fn call(
        &self,
        method: &'static str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let (status, text) = match (method, body) {
            ("GET", _) => self.send(path, token, Vec::new(), None).await?,
            (_, b) => {
                let json = b.unwrap_or(Value::Null).to_string().into_bytes();
                let headers = vec![("content-type", "application/json".to_owned())];
                self.send(path, token, headers, Some(json)).await?
            }
        };
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// `POST path` with a raw body and headers (audio): the status.
    pub async fn post_bytes(
        &self,
        path: &str,
        token: &str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    ) -> Result<u16, String> {
        Ok(self.send(path, token, headers, Some(body)).await?.0)
    }

    /// `PUT path` with the file at `file` as the body (streamed, its
    /// length declared) and `headers`: the status and the reply's JSON.
    pub async fn put_file(
        &self,
        path: &str,
        token: &str,
        headers: Vec<(&'static str, String)>,
        file: std::path::PathBuf,
    ) -> Result<(u16, Value), String> {
        let (http, url, auth) = self.target(path, token);
        tokio::task::spawn_blocking(move || {
            let mut f = std::fs::File::open(&file)
                .map_err(|e| format!("opening {}: {e}", file.display()))?;
            let len = f.metadata().map_err(|e| e.to_string())?.len();
            // NOTE: a whole take may be large: the upload's own bound.
            let mut req = http
                .put(&url)
                .config()
                .timeout_global(Some(Duration::from_secs(1800)))
                .build()
                .header("authorization", &auth)
                .header("content-length", len.to_string());
            for (k, v) in &headers {
                req = req.header(*k, v);
            }
            let mut resp = req
                .send(ureq::SendBody::from_reader(&mut f))
                .map_err(|e| format!("{url}: {e}"))?;
            let status = resp.status().as_u16();
            let text = resp.body_mut().read_to_string().unwrap_or_default();
            Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
        })
        .await
        .map_err(|e| e.to_string())?
    }

    fn target(&self, path: &str, token: &str) -> (ureq::Agent, String, String) {
        (
            self.http.clone(),
            format!("{}{path}", self.base),
            format!("Bearer {token}"),
        )
    }

    /// One request on the blocking pool (a GET without `body`, else a
    /// POST): the status and the reply's text.
    async fn send(
        &self,
        path: &str,
        token: &str,
        headers: Vec<(&'static str, String)>,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, String), String> {
        let (http, url, auth) = self.target(path, token);
        tokio::task::spawn_blocking(move || {
            let resp = match body {
                None => http.get(&url).header("authorization", &auth).call(),
                Some(b) => {
                    let mut req = http.post(&url).header("authorization", &auth);
                    for (k, v) in &headers {
                        req = req.header(*k, v);
                    }
                    req.send(&b[..])
                }
            };
            let mut resp = resp.map_err(|e| format!("{url}: {e}"))?;
            let status = resp.status().as_u16();
            Ok((status, resp.body_mut().read_to_string().unwrap_or_default()))
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Whether the controller says it is ready (`/readyz` 200).
    pub async fn ready(&self) -> bool {
        matches!(self.call("GET", "/readyz", "", None).await, Ok((200, _)))
    }

    /// Whether `token` is node `node`'s: a call only that node may make
    /// (its config). A 401 counts as a bad token only while the controller
    /// is ready: with its database down it answers 401 to every token.
    pub async fn check_token(&self, node: &str, token: &str) -> TokenVerdict {
        let path = self.node_path(node, "config");
        match self.call("GET", &path, token, None).await {
            Ok((200, _)) => TokenVerdict::Valid,
            Ok((403, _)) => TokenVerdict::OtherNode,
            Ok((401, _)) if self.ready().await => TokenVerdict::Invalid,
            Ok((401, _)) => TokenVerdict::Unavailable("the controller is not ready".into()),
            Ok((code, _)) => TokenVerdict::Unavailable(format!("the controller answered {code}")),
            Err(e) => TokenVerdict::Unavailable(e),
        }
    }
}
