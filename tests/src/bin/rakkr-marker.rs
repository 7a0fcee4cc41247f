//! A program that must never run unverified: offered as an update in the
//! signed-release tests, it leaves a marker file (at `$RAKKR_TEST_MARKER`,
//! inherited from the agent that runs it) whenever it is executed, and
//! answers `--version` like an agent so nothing else would stop it.

fn main() {
    if let Some(path) = std::env::var_os("RAKKR_TEST_MARKER") {
        let args: Vec<String> = std::env::args().collect();
        let _ = std::fs::write(path, format!("executed with {args:?}\n"));
    }
    println!("rakkr-recorder-agent 2099.01.01-1");
}
