//! The README's exit-code table and the agent's behaviour agree: the
//! table is read from README.md, and every code in it is either produced
//! here by a real invocation of the agent, or asserted by the named test
//! (which this test checks exists and names the code). A code added to
//! the table without either, or produced for another reason, fails here.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use rakkr_e2e::agent::run_agent;

/// The codes of the table under "Exit codes" in README.md.
fn readme_codes() -> Vec<u8> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("reading README.md");
    let table = readme
        .split_once("Exit codes")
        .expect("the README has an exit code table")
        .1;
    table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| l.split('|').nth(1)?.trim().parse().ok())
        .collect()
}

/// Where a code is asserted by another test: (file under tests/e2e, test fn).
const ELSEWHERE: &[(u8, &str, &str)] = &[
    (
        28,
        "console.rs",
        "print_inventory_and_console_say_which_console_and_its_channel_names",
    ),
    (
        6,
        "cli.rs",
        "second_daemon_on_the_same_state_dir_exits_6_and_status_without_daemon_exits_7",
    ),
    (
        10,
        "update_cli.rs",
        "signed_artifacts_still_meet_every_other_check_with_its_exit_code",
    ),
    (
        11,
        "update_cli.rs",
        "signed_artifacts_still_meet_every_other_check_with_its_exit_code",
    ),
    (
        12,
        "update_cli.rs",
        "signed_artifacts_still_meet_every_other_check_with_its_exit_code",
    ),
    (
        13,
        "diskfull.rs",
        "the_daemon_survives_a_disk_filled_from_outside_and_records_again_when_space_is_back",
    ),
    (
        21,
        "trust.rs",
        "trust_install_refusals_have_distinct_exit_codes_and_write_nothing",
    ),
    (
        22,
        "trust.rs",
        "trust_install_refusals_have_distinct_exit_codes_and_write_nothing",
    ),
    (
        23,
        "trust.rs",
        "trust_install_refusals_have_distinct_exit_codes_and_write_nothing",
    ),
    (
        24,
        "trust.rs",
        "trust_install_refusals_have_distinct_exit_codes_and_write_nothing",
    ),
    (
        26,
        "enroll.rs",
        "enrollment_from_an_empty_state_directory_with_a_one_time_token",
    ),
    (
        75,
        "update.rs",
        "streamed_update_of_a_release_archive_comes_back_as_the_new_version",
    ),
];

/// The body of `fn name` in `file`.
fn test_body(file: &str, name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e").join(file);
    let src = std::fs::read_to_string(&path).expect("reading a test file");
    let at = src
        .find(&format!("fn {name}("))
        .unwrap_or_else(|| panic!("{file} has no test {name}"));
    let rest = &src[at..];
    let end = rest[1..]
        .find("\nfn ")
        .or_else(|| rest[1..].find("\n#["))
        .map_or(rest.len(), |e| e + 1);
    rest[..end].to_owned()
}

fn code(out: &std::process::Output) -> u8 {
    out.status.code().unwrap_or(-1) as u8
}

#[test]
fn the_readme_table_and_the_behaviour_agree() {
    rakkr_e2e::init_logging();
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path();
    let state = p.join("state");
    let env = HashMap::from([("RAKKR_STATE_DIR".to_owned(), state.display().to_string())]);
    let with = |extra: &[(&str, &str)]| {
        let mut e = env.clone();
        e.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        e
    };
    let url = ("RAKKR_CONTROLLER_URL", "rakkr://127.0.0.1:1");
    let mut got: BTreeMap<u8, String> = BTreeMap::new();
    let mut expect = |want: u8, what: &str, out: std::process::Output| {
        assert_eq!(
            code(&out),
            want,
            "{what}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        got.insert(want, what.to_owned());
    };

    let file = p.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let some = p.join("some-artifact");
    std::fs::write(&some, b"x").unwrap();
    let (file_s, some_s) = (file.to_str().unwrap(), some.to_str().unwrap());
    let not_hex = "g".repeat(64);
    fn apply<'a>(artifact: &'a str, hash: &'a str) -> Vec<&'a str> {
        vec!["update", "apply", "--artifact", artifact, "--sha256", hash]
    }
    // (code, what, arguments): each run with the plain environment.
    let plain: Vec<(u8, &str, Vec<&str>)> = vec![
        (0, "--version", vec!["--version"]),
        (
            1,
            "check --configured without a controller",
            vec!["check", "--configured"],
        ),
        (2, "an unknown flag", vec!["--bogus"]),
        (2, "record --channels 0", vec!["record", "--channels", "0"]),
        (
            2,
            "record --output <a regular file>",
            vec!["record", "--output", file_s, "--duration", "1s"],
        ),
        (
            2,
            "update apply with a hash too short",
            apply(some_s, "xyz"),
        ),
        (
            2,
            "update apply with a hash that is not hex",
            apply(some_s, &not_hex),
        ),
        (7, "status without a daemon", vec!["status"]),
    ];
    for (want, what, args) in plain {
        expect(want, what, run_agent(&args, &env));
    }
    let bad = p.join("bad.toml");
    std::fs::write(&bad, "[capture]\nsample_rate = 5\n").unwrap();
    let out = run_agent(
        &["--config", bad.to_str().unwrap(), "check", "--config-only"],
        &env,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 2"),
        "{out:?}"
    );
    expect(3, "a config value out of range", out);
    expect(
        4,
        "check without trust",
        run_agent(&["check"], &with(&[url])),
    );
    let mut not_a_dir = env.clone();
    not_a_dir.insert("RAKKR_STATE_DIR".into(), file.display().to_string());
    not_a_dir.insert(url.0.into(), url.1.into());
    expect(
        5,
        "a state directory that is a file",
        run_agent(&["run"], &not_a_dir),
    );
    expect(
        8,
        "record from a device that does not exist",
        run_agent(
            &[
                "record",
                "--device",
                "no-such-device",
                "--duration",
                "1s",
                "--output",
                p.join("t").to_str().unwrap(),
            ],
            &env,
        ),
    );
    let damaged = p.join("damaged");
    std::fs::create_dir_all(&damaged).unwrap();
    std::fs::write(damaged.join("manifest.json"), b"{\"takeId\":").unwrap();
    expect(
        9,
        "recover a take whose manifest is cut",
        run_agent(&["recover", damaged.to_str().unwrap()], &env),
    );
    let root = p.join("takes-root");
    std::fs::create_dir_all(root.join("ok-take")).unwrap();
    std::fs::create_dir_all(root.join("cut-take")).unwrap();
    std::fs::write(root.join("cut-take/manifest.json"), b"{\"takeId\":").unwrap();
    expect(
        9,
        "recover a directory of takes, one of them unrecoverable",
        run_agent(&["recover", root.to_str().unwrap()], &env),
    );
    expect(
        9,
        "takes verify of that take",
        run_agent(&["takes", "verify", damaged.to_str().unwrap()], &env),
    );
    // Updates: the agent's unsigned junk is refused (17); signed with a key
    // this development build trusts by configuration, it goes on to the
    // install path (14) and the executable checks (15).
    let key = rakkr_e2e::update::ReleaseKey::shared();
    let signed_env = with(&[("RAKKR_UPDATE_TRUSTED_KEYS", key.public())]);
    let junk_dir = p.join("junk-release");
    std::fs::create_dir_all(&junk_dir).unwrap();
    let junk = junk_dir.join("junk");
    std::fs::write(&junk, b"not an agent").unwrap();
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"not an agent"));
    let install = p.join("bin").join("rakkr-recorder-agent");
    let update = |extra: &[&str], env: &HashMap<String, String>| {
        let mut a = vec!["update", "apply", "--artifact", junk.to_str().unwrap()];
        a.extend_from_slice(extra);
        run_agent(&a, env)
    };
    expect(
        17,
        "an unsigned artifact",
        update(&["--sha256", &sha], &signed_env),
    );
    let target = rakkr_e2e::agent::target_of(&rakkr_e2e::agent_bin());
    // Listed as the bare binary (a release archive of another name beside).
    let archive = junk_dir.join("rakkr-recorder-agent.tar.gz");
    std::fs::write(&archive, b"an archive").unwrap();
    let manifest = rakkr_e2e::update::release_manifest("2099.01.01-1", &target, &archive, &junk);
    rakkr_e2e::update::signed_manifest(key, &junk_dir, junk.clone(), manifest);
    expect(
        17,
        "a signed artifact whose key this agent does not trust",
        update(&["--sha256", &sha], &env),
    );
    expect(
        14,
        "an install path in a missing directory",
        update(
            &[
                "--sha256",
                &sha,
                "--install-path",
                install.to_str().unwrap(),
            ],
            &signed_env,
        ),
    );
    std::fs::create_dir_all(install.parent().unwrap()).unwrap();
    expect(
        15,
        "an artifact that is not an agent",
        update(
            &[
                "--sha256",
                &sha,
                "--install-path",
                install.to_str().unwrap(),
            ],
            &signed_env,
        ),
    );
    expect(
        16,
        "rollback without a previous binary",
        run_agent(
            &[
                "update",
                "rollback",
                "--install-path",
                install.to_str().unwrap(),
            ],
            &env,
        ),
    );
    // Trust: an unreadable file (20), and a store that cannot be written (25).
    let pki = rakkr_e2e::TestPki::new();
    let (ca, cert, key) = pki.identity_files(p, "node-x");
    let garbage = p.join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN nonsense").unwrap();
    let install_trust = |cert: &Path, env: &HashMap<String, String>| {
        rakkr_e2e::agent::trust_install(&ca, cert, &key, env)
    };
    expect(
        20,
        "trust install of a file that is not PEM",
        install_trust(&garbage, &env),
    );
    let blocked = p.join("blocked");
    std::fs::create_dir_all(&blocked).unwrap();
    std::fs::write(blocked.join("trust"), b"not a directory").unwrap();
    let mut blocked_env = env.clone();
    blocked_env.insert("RAKKR_STATE_DIR".into(), blocked.display().to_string());
    expect(
        25,
        "trust install into a store that cannot be written",
        install_trust(&cert, &blocked_env),
    );
    let token = p.join("token");
    std::fs::write(&token, "t0k3n").unwrap();
    expect(
        27,
        "enrollment with an unreachable controller",
        run_agent(
            &[
                "trust",
                "enroll",
                "--ca",
                ca.to_str().unwrap(),
                "--controller",
                "rakkr://127.0.0.1:1",
                "--node-id",
                "node-x",
                "--token-file",
                token.to_str().unwrap(),
            ],
            &env,
        ),
    );
    for (c, file, name) in ELSEWHERE {
        let body = test_body(file, name);
        assert!(
            body.contains(&format!("Some({c})")) || body.contains(&format!("{c},")),
            "{file}::{name} does not assert exit code {c}"
        );
        got.insert(*c, format!("{file}::{name}"));
    }
    let table = readme_codes();
    assert!(
        table.len() >= 25,
        "the README table was not found: {table:?}"
    );
    for c in &table {
        assert!(
            got.contains_key(c),
            "exit code {c} is in the README but nothing produces it here"
        );
    }
    for c in got.keys() {
        assert!(
            table.contains(c),
            "exit code {c} ({}) is not in the README table",
            got[c]
        );
    }
}
