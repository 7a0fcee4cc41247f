//! The bridge's settings: a TOML file (`--config`, default
//! `/etc/rakkr-bridge/bridge.toml`, may be absent) under `RAKKR_BRIDGE_*`
//! variables (a variable wins: `RAKKR_BRIDGE_API_URL` sets `api_url`).
//! Checked whole before anything starts; a bad one names the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

pub const DEFAULT_PATH: &str = "/etc/rakkr-bridge/bridge.toml";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    listen: Option<String>,
    api_url: Option<String>,
    credentials_dir: Option<PathBuf>,
    ca_cert: Option<PathBuf>,
    ca_key: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    heartbeat_seconds: Option<u64>,
    node_cert_days: Option<u64>,
    metrics_listen: Option<String>,
    cache_dir: Option<PathBuf>,
    lease_grace_seconds: Option<u64>,
    node_ids: Option<BTreeMap<String, String>>,
}

/// Every key: (name, what it is).
pub const KEYS: &[(&str, &str)] = &[
    ("listen", "where agents link (default 0.0.0.0:7443)"),
    ("api_url", "the Rakkr controller's base URL (required)"),
    (
        "credentials_dir",
        "node tokens (default /var/lib/rakkr-bridge/credentials)",
    ),
    ("ca_cert", "the fleet CA certificate (PEM)"),
    (
        "ca_key",
        "the fleet CA private key (PEM): signs node certificates",
    ),
    (
        "cert",
        "the bridge's server certificate (PEM, from the fleet CA)",
    ),
    ("key", "the bridge's server key (PEM)"),
    (
        "heartbeat_seconds",
        "between a node's heartbeats to the controller (default 5)",
    ),
    (
        "node_cert_days",
        "lifetime of the node certificates issued (default 30)",
    ),
    (
        "metrics_listen",
        "/healthz and /metrics (default 0.0.0.0:9464; \"off\": not served)",
    ),
    (
        "cache_dir",
        "take files pulled from nodes until delivered (default /var/cache/rakkr-bridge)",
    ),
    (
        "node_ids",
        "our node id = its Rakkr id, where they differ (a table; the variable: a=b,c=d)",
    ),
    (
        "lease_grace_seconds",
        "how long a job's lease is kept while its node is away (default 600, 0-86400)",
    ),
];

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub api_url: String,
    pub credentials_dir: PathBuf,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub heartbeat: Duration,
    pub node_cert_lifetime: Duration,
    pub metrics_listen: Option<SocketAddr>,
    pub cache_dir: PathBuf,
    pub lease_grace: Duration,
    /// Our node id → its Rakkr id, where they differ.
    pub node_ids: BTreeMap<String, String>,
}

/// What `node` commands need: the controller's URL, where node tokens
/// are kept and the node id map (the PKI keys are not required).
pub fn load_admin(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<(String, PathBuf, BTreeMap<String, String>)> {
    let raw = raw(path, env)?;
    Ok((
        api_url(raw.api_url)?,
        raw.credentials_dir
            .unwrap_or_else(|| DEFAULT_CREDENTIALS.into()),
        node_ids(raw.node_ids)?,
    ))
}

/// `a=b,c=d` as a TOML table.
fn node_id_pairs(var: &str, v: &str) -> anyhow::Result<toml::Table> {
    let mut t = toml::Table::new();
    for pair in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = pair
            .split_once('=')
            .with_context(|| format!("{var}: {pair:?} is not ours=rakkrs"))?;
        t.insert(
            a.trim().to_owned(),
            toml::Value::String(b.trim().to_owned()),
        );
    }
    Ok(t)
}

/// Most entries of the node id map.
const NODE_IDS_MAX: usize = 10_000;

/// Checks the node id map: safe ids, no Rakkr id twice.
fn node_ids(m: Option<BTreeMap<String, String>>) -> anyhow::Result<BTreeMap<String, String>> {
    let m = m.unwrap_or_default();
    if m.len() > NODE_IDS_MAX {
        bail!("node_ids has {} entries (at most {NODE_IDS_MAX})", m.len());
    }
    let ok = |s: &str| {
        (1..=128).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    let mut seen = std::collections::BTreeSet::new();
    for (ours, theirs) in &m {
        if !ok(ours) || !ok(theirs) {
            bail!("node_ids {ours:?} = {theirs:?}: ids are 1-128 of A-Z a-z 0-9 - _ .");
        }
        if !seen.insert(theirs) {
            bail!("node_ids maps two nodes to {theirs:?}");
        }
    }
    Ok(m)
}

const DEFAULT_CREDENTIALS: &str = "/var/lib/rakkr-bridge/credentials";

fn api_url(v: Option<String>) -> anyhow::Result<String> {
    let api_url = v.context("api_url is not set (or RAKKR_BRIDGE_API_URL)")?;
    if !(api_url.starts_with("http://") || api_url.starts_with("https://")) {
        bail!("api_url {api_url:?} must be the controller's http(s):// URL");
    }
    Ok(api_url)
}

/// The file at `path` (absent: every key unset) under the variables.
fn raw(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Raw> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut table: toml::Table = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))?;
    for (key, _) in KEYS {
        let var = format!("RAKKR_BRIDGE_{}", key.to_uppercase());
        if let Some(v) = env(&var) {
            let value = match *key {
                "heartbeat_seconds" | "node_cert_days" | "lease_grace_seconds" => {
                    toml::Value::Integer(
                        v.trim()
                            .parse()
                            .with_context(|| format!("{var}={v:?} is not a whole number"))?,
                    )
                }
                "node_ids" => toml::Value::Table(node_id_pairs(&var, &v)?),
                _ => toml::Value::String(v),
            };
            table.insert((*key).to_owned(), value);
        }
    }
    Raw::deserialize(table)
        .with_context(|| format!("{} (with RAKKR_BRIDGE_* applied)", path.display()))
}

/// The file at `path` (absent: defaults) under the variables from `env`.
pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Config> {
    let raw = raw(path, env)?;
    let need = |v: Option<PathBuf>, key: &str| {
        v.with_context(|| format!("{key} is not set (or RAKKR_BRIDGE_{})", key.to_uppercase()))
    };
    let api_url = api_url(raw.api_url)?;
    let heartbeat = raw.heartbeat_seconds.unwrap_or(5);
    if !(1..=60).contains(&heartbeat) {
        bail!(
            "heartbeat_seconds {heartbeat} must be 1-60 (the controller marks a node offline after 120 s)"
        );
    }
    let days = raw.node_cert_days.unwrap_or(30);
    if !(1..=825).contains(&days) {
        bail!("node_cert_days {days} must be 1-825");
    }
    let grace = raw.lease_grace_seconds.unwrap_or(600);
    if grace > 86_400 {
        bail!("lease_grace_seconds {grace} must be 0-86400");
    }
    let listen = raw.listen.as_deref().unwrap_or("0.0.0.0:7443");
    let metrics_listen =
        match raw.metrics_listen.as_deref().unwrap_or("0.0.0.0:9464") {
            "off" | "" => None,
            at => Some(at.parse().with_context(|| {
                format!("metrics_listen {at:?} is not an address:port or \"off\"")
            })?),
        };
    Ok(Config {
        listen: listen
            .parse()
            .with_context(|| format!("listen {listen:?} is not an address:port"))?,
        api_url,
        credentials_dir: raw
            .credentials_dir
            .unwrap_or_else(|| DEFAULT_CREDENTIALS.into()),
        ca_cert: need(raw.ca_cert, "ca_cert")?,
        ca_key: need(raw.ca_key, "ca_key")?,
        cert: need(raw.cert, "cert")?,
        key: need(raw.key, "key")?,
        heartbeat: Duration::from_secs(heartbeat),
        node_cert_lifetime: Duration::from_secs(days * 86_400),
        metrics_listen,
        cache_dir: raw
            .cache_dir
            .unwrap_or_else(|| "/var/cache/rakkr-bridge".into()),
        lease_grace: Duration::from_secs(grace),
        node_ids: node_ids(raw.node_ids)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_win_and_every_problem_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bridge.toml");
        std::fs::write(
            &file,
            "api_url = \"http://file:8787\"\nca_cert = \"/c\"\nca_key = \"/k\"\ncert = \"/b\"\nkey = \"/bk\"\n",
        )
        .unwrap();
        let env = |k: &str| (k == "RAKKR_BRIDGE_API_URL").then(|| "http://env:8787".to_owned());
        let c = load(&file, &env).unwrap();
        assert_eq!(c.api_url, "http://env:8787");
        assert_eq!(c.listen.port(), 7443);
        assert_eq!(c.heartbeat, Duration::from_secs(5));
        let none = |_: &str| None;
        let err = format!(
            "{:#}",
            load(&dir.path().join("absent.toml"), &none).unwrap_err()
        );
        assert!(err.contains("RAKKR_BRIDGE_API_URL"), "{err}");
        std::fs::write(&file, "api_url = \"http://x\"\nbogus = 1\n").unwrap();
        let err = format!("{:#}", load(&file, &none).unwrap_err());
        assert!(err.contains("bogus"), "{err}");
        let bad = |k: &str| (k == "RAKKR_BRIDGE_HEARTBEAT_SECONDS").then(|| "soon".to_owned());
        assert!(
            format!("{:#}", load(&file, &bad).unwrap_err())
                .contains("RAKKR_BRIDGE_HEARTBEAT_SECONDS")
        );
    }

    #[test]
    fn the_deployment_files_set_only_variables_the_bridge_reads() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let known: Vec<String> = KEYS
            .iter()
            .map(|(k, _)| format!("RAKKR_BRIDGE_{}", k.to_uppercase()))
            .chain([
                "RAKKR_BRIDGE_CONFIG".to_owned(),
                "RAKKR_BRIDGE_SRC".to_owned(),
            ])
            .collect();
        for file in [
            "bridge/Dockerfile",
            "deploy/compose/rakkr-bridge.yml",
            "deploy/helm/rakkr-bridge/templates/deployment.yaml",
        ] {
            let text = std::fs::read_to_string(root.join(file)).unwrap();
            let mut seen = 0;
            for (i, _) in text.match_indices("RAKKR_BRIDGE_") {
                let name: String = text[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                    .collect();
                if name.ends_with('_') {
                    continue; // prose: RAKKR_BRIDGE_*
                }
                assert!(
                    known.contains(&name),
                    "{file}: {name} is not a bridge setting"
                );
                seen += 1;
            }
            assert!(seen > 0, "{file} sets nothing");
        }
    }

    #[test]
    fn node_ids_map_by_file_or_variable_and_refuse_two_nodes_on_one_id() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bridge.toml");
        std::fs::write(
            &file,
            "api_url = \"http://c:8787\"\n[node_ids]\nfoh = \"node_x32_main\"\n",
        )
        .unwrap();
        let (_, _, ids) = load_admin(&file, &|_| None).unwrap();
        assert_eq!(ids["foh"], "node_x32_main");
        let env = |k: &str| {
            (k == "RAKKR_BRIDGE_NODE_IDS").then(|| "foh=node_a, stage = node_b".to_owned())
        };
        let (_, _, ids) = load_admin(&file, &env).unwrap();
        assert_eq!(
            (ids["foh"].as_str(), ids["stage"].as_str()),
            ("node_a", "node_b")
        );
        let twice =
            |k: &str| (k == "RAKKR_BRIDGE_NODE_IDS").then(|| "a=node_a,b=node_a".to_owned());
        let e = load_admin(&file, &twice).unwrap_err();
        assert!(
            format!("{e:#}").contains("two nodes to \"node_a\""),
            "{e:#}"
        );
        let bad = |k: &str| (k == "RAKKR_BRIDGE_NODE_IDS").then(|| "a=../x".to_owned());
        assert!(format!("{:#}", load_admin(&file, &bad).unwrap_err()).contains("ids are 1-128"));
        let api = crate::api::RakkrApi::new("http://c").with_node_ids(ids);
        assert_eq!(
            api.node_path("foh", "heartbeat"),
            "/api/v1/nodes/node_a/heartbeat"
        );
        assert_eq!(
            api.node_path("other", "config"),
            "/api/v1/nodes/other/config"
        );
    }
}
