//! Stamps the build: version (`RAKKR_VERSION`, validated `YYYY.MM.DD-N`, or
//! `<cargo version>+<git rev>` for development builds), git revision, target
//! triple and build date (from `SOURCE_DATE_EPOCH`, else the commit time, so
//! two builds of one commit are identical).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn is_calendar_version(v: &str) -> bool {
    let Some((date, n)) = v.split_once('-') else {
        return false;
    };
    let parts: Vec<&str> = date.split('.').collect();
    parts.len() == 3
        && [4, 2, 2]
            .iter()
            .zip(&parts)
            .all(|(len, p)| p.len() == *len && p.bytes().all(|b| b.is_ascii_digit()))
        && !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn main() {
    println!("cargo:rerun-if-env-changed=RAKKR_VERSION");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    // Test builds only: RAKKR_BUILD_TEST_FAULTS=1 compiles in the faults the
    // update tests inject (see build_info::fault). Release builds never set it.
    println!("cargo:rerun-if-env-changed=RAKKR_BUILD_TEST_FAULTS");
    println!("cargo::rustc-check-cfg=cfg(rakkr_test_faults)");
    if std::env::var("RAKKR_BUILD_TEST_FAULTS").is_ok_and(|v| v == "1") {
        println!("cargo:rustc-cfg=rakkr_test_faults");
    }
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={dir}/{r}");
        }
    }
    let rev = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let version = match std::env::var("RAKKR_VERSION")
        .ok()
        .filter(|v| !v.is_empty())
    {
        Some(v) if is_calendar_version(&v) => v,
        Some(v) => panic!("RAKKR_VERSION={v:?} is not a calendar version YYYY.MM.DD-N"),
        None => format!(
            "{}+{rev}",
            std::env::var("CARGO_PKG_VERSION").unwrap_or_default()
        ),
    };
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .or_else(|| git(&["log", "-1", "--format=%ct"]))
        .and_then(|s| s.parse::<i64>().ok());
    let date = epoch.map_or_else(
        || "unknown".to_owned(),
        |e| {
            let (y, m, d) = civil(e.div_euclid(86_400));
            format!("{y:04}-{m:02}-{d:02}")
        },
    );
    println!("cargo:rustc-env=RAKKR_BUILD_VERSION={version}");
    println!("cargo:rustc-env=RAKKR_BUILD_REV={rev}");
    println!("cargo:rustc-env=RAKKR_BUILD_DATE={date}");
    println!(
        "cargo:rustc-env=RAKKR_BUILD_TARGET={}",
        std::env::var("TARGET").unwrap_or_default()
    );
}
