//! Keeps ARCHITECTURE.md's claim true: the agent's top-level modules
//! depend on each other one way (no cycles), and the libraries under the
//! node (`update`, `trust`, `take`, `capture`, `config`, `console`) never reach up
//! into it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module → the top-level modules its non-test code names
/// (`crate::x`), comments left out.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = vec![src.clone()];
    // Bounded: the source tree, walked once.
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        if p.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let rel = p.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        let text = std::fs::read_to_string(&p).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let deps = g.entry(top.clone()).or_default();
        for line in code.lines().map(str::trim) {
            if line.starts_with("//") {
                continue;
            }
            for part in line.split("crate::").skip(1) {
                let name: String = part
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != top {
                    deps.insert(name);
                }
            }
        }
    }
    g
}

/// A cycle through `from`, if any (depth-first, bounded by the graph).
fn cycle_from(g: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    let mut stack = vec![(from.to_owned(), vec![from.to_owned()])];
    let mut seen = BTreeSet::new();
    while let Some((at, path)) = stack.pop() {
        for next in g.get(&at).into_iter().flatten() {
            if next == from {
                let mut c = path.clone();
                c.push(from.to_owned());
                return Some(c);
            }
            if seen.insert(next.clone()) {
                let mut p = path.clone();
                p.push(next.clone());
                stack.push((next.clone(), p));
            }
        }
    }
    None
}

#[test]
fn top_level_modules_depend_on_each_other_one_way() {
    let g = graph();
    assert!(g.len() > 20, "the source tree was not found: {g:?}");
    for m in g.keys() {
        if let Some(c) = cycle_from(&g, m) {
            panic!("module cycle: {}", c.join(" → "));
        }
    }
}

#[test]
fn the_libraries_under_the_node_never_reach_up_into_it() {
    let g = graph();
    for lib in ["update", "trust", "take", "capture", "config", "console"] {
        for up in ["node", "jobs", "dispatch", "daemon", "link"] {
            assert!(!g[lib].contains(up), "{lib} depends on {up}: {:?}", g[lib]);
        }
    }
}
