//! Node credentials: the Rakkr bearer token of each linked node, one file
//! per node (`<dir>/<node>.token`, 0600, the directory 0700), replaced
//! atomically. The only state the bridge keeps: everything else comes
//! back from the controller and the nodes after a restart.

use std::path::{Path, PathBuf};

use anyhow::Context;

#[derive(Debug, Clone)]
pub struct Credentials {
    dir: PathBuf,
}

/// Node ids become file names: the controller's ids are this safe.
fn valid(node: &str) -> bool {
    !node.is_empty()
        && node.len() <= 128
        && !node.starts_with('.')
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Credentials {
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating the credentials directory {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("setting mode 0700 on {}", dir.display()))?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    fn path(&self, node: &str) -> Option<PathBuf> {
        valid(node).then(|| self.dir.join(format!("{node}.token")))
    }

    /// Node `node`'s token, if the bridge holds one.
    pub fn get(&self, node: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.path(node)?).ok()?;
        Some(text.trim().to_owned()).filter(|t| !t.is_empty())
    }

    /// Keeps `token` as node `node`'s.
    pub fn put(&self, node: &str, token: &str) -> anyhow::Result<()> {
        let path = self
            .path(node)
            .with_context(|| format!("{node:?} is not a node id the bridge can keep"))?;
        rakkr_protocol::fsutil::atomic_write(&path, token.as_bytes(), 0o600)
            .with_context(|| format!("keeping the token of {node} in {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn tokens_are_kept_private_per_node() {
        let tmp = tempfile::tempdir().unwrap();
        let c = Credentials::open(&tmp.path().join("creds")).unwrap();
        assert_eq!(c.get("node_a"), None);
        c.put("node_a", "rakkr_node_1").unwrap();
        c.put("node_a", "rakkr_node_2").unwrap();
        assert_eq!(c.get("node_a").as_deref(), Some("rakkr_node_2"));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&tmp.path().join("creds/node_a.token")), 0o600);
        assert_eq!(mode(&tmp.path().join("creds")), 0o700);
        assert!(c.put("../evil", "x").is_err());
        assert_eq!(c.get("../evil"), None);
    }
}
