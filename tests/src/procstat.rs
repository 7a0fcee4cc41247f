//! What a process costs, from /proc: CPU seconds and resident memory,
//! for benchmarks that measure a spawned binary.

/// CPU seconds (user + system) process `pid` has used.
pub fn cpu_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // NOTE: fields after the command name, which may hold spaces.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    (field(11) + field(12)) as f64 / hz
}

/// Resident memory of `pid`, KiB.
pub fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU % and largest RSS (KiB) of `pid` over `secs`, RSS looked at every
/// `every`.
pub async fn sample(pid: u32, secs: u64, every: std::time::Duration) -> (f64, u64) {
    let (c0, t0) = (cpu_of(pid), std::time::Instant::now());
    let mut rss = 0;
    let looks = (secs as f64 / every.as_secs_f64()).ceil() as u64;
    // Bounded: `looks` looks.
    for _ in 0..looks {
        tokio::time::sleep(every).await;
        rss = rss.max(rss_of(pid));
    }
    (100.0 * (cpu_of(pid) - c0) / t0.elapsed().as_secs_f64(), rss)
}
