//! Real certificates for tests: a fleet CA, a controller certificate for
//! 127.0.0.1/localhost, and node trust directories.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rakkr_devpki::{Ca, Leaf, Validity, write_node_trust};
use rakkr_protocol::tls::{self, Identity};

fn fastrand_u32() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now()) as u32
}

#[derive(Debug)]
pub struct TestPki {
    pub ca: Arc<Ca>,
    pub controller: Leaf,
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

impl TestPki {
    pub fn new() -> Self {
        // Unique names: two CAs with one name are a different failure (bad signature).
        let ca =
            Arc::new(Ca::new(&format!("Rakkr test fleet CA {:08x}", fastrand_u32())).expect("CA"));
        let controller = ca
            .issue_controller(&["localhost", "127.0.0.1", "::1"], Validity::days(30))
            .expect("controller cert");
        Self { ca, controller }
    }

    fn controller_identity(&self) -> Identity {
        Identity::from_pem(
            self.controller.cert_pem.as_bytes(),
            self.controller.key_pem.as_bytes(),
            "controller",
        )
        .expect("controller identity")
    }

    /// The controller's TLS config (TLS 1.3 only unless `versions` says otherwise).
    pub fn server_config_with(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<rustls::ServerConfig> {
        let id = self.controller_identity();
        tls::server_config(std::slice::from_ref(&self.ca.cert_der), id, versions)
            .expect("server config")
    }

    /// The controller's TLS config with `options` (enrollment, renewal grace).
    pub fn server_config_opts(
        &self,
        options: rakkr_controller::tls::ServerOptions,
    ) -> Arc<rustls::ServerConfig> {
        let id = self.controller_identity();
        rakkr_controller::tls::server_config_for(
            std::slice::from_ref(&self.ca.cert_der),
            id,
            tls::TLS13_ONLY,
            options,
        )
        .expect("server config")
    }

    /// Also lets node certificates expired less than `grace` ago in, for
    /// renewal only.
    pub fn server_config_with_grace(
        &self,
        grace: std::time::Duration,
    ) -> Arc<rustls::ServerConfig> {
        let id = self.controller_identity();
        rakkr_controller::tls::server_config_with_grace(
            std::slice::from_ref(&self.ca.cert_der),
            id,
            tls::TLS13_ONLY,
            Some(grace),
        )
        .expect("server config")
    }

    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.server_config_with(tls::TLS13_ONLY)
    }

    /// Writes `ca.pem`, `node.pem` and `node.key` for `node_id` into `dir`
    /// (the files `trust install` takes); returns their paths.
    pub fn identity_files(&self, dir: &Path, node_id: &str) -> (PathBuf, PathBuf, PathBuf) {
        let leaf = self
            .ca
            .issue_node(node_id, Validity::days(30))
            .expect("node cert");
        let paths = (
            dir.join("ca.pem"),
            dir.join("node.pem"),
            dir.join("node.key"),
        );
        std::fs::create_dir_all(dir).expect("creating the identity directory");
        std::fs::write(&paths.0, &self.ca.cert_pem).expect("writing ca.pem");
        std::fs::write(&paths.1, &leaf.cert_pem).expect("writing node.pem");
        std::fs::write(&paths.2, &leaf.key_pem).expect("writing node.key");
        paths
    }

    /// Writes `<state>/trust/{ca.pem,node.pem,node.key}` for `node_id`.
    pub fn node_trust(&self, state: &Path, node_id: &str, validity: Validity) -> PathBuf {
        let leaf = self.ca.issue_node(node_id, validity).expect("node cert");
        let dir = state.join("trust");
        write_node_trust(&dir, &self.ca.cert_pem, &leaf).expect("writing trust");
        dir
    }
}
