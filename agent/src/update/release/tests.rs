use super::*;

/// A fresh key pair: (public key base64, secret key).
fn keypair() -> (String, minisign::SecretKey) {
    let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    (kp.pk.to_base64(), kp.sk)
}

fn sign(sk: &minisign::SecretKey, data: &[u8]) -> String {
    minisign::sign(None, sk, std::io::Cursor::new(data), None, None)
        .unwrap()
        .into_string()
}

fn keys(pk: &str) -> Keys {
    let (id, key) = parse_key(pk).unwrap();
    let mut k = Keys::default();
    k.push(id, "test", key);
    k
}

const T: &str = "x86_64-unknown-linux-musl";

fn manifest() -> Vec<u8> {
    format!(
        r#"{{"version":"2026.11.23-2","gitRevision":"abc","sourceDateEpoch":1,"future":true,
"targets":{{"{T}":{{"archive":"a.tar.gz","archiveSha256":"{}","archiveSize":300,
"binarySha256":"{}","binarySize":900}}}}}}"#,
        "aa".repeat(32),
        "BB".repeat(32)
    )
    .into_bytes()
}

#[test]
fn the_built_in_key_file_parses_line_by_line() {
    for line in BUILT_IN.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        parse_key(line).unwrap_or_else(|e| panic!("release-keys.txt: {line:?}: {e}"));
    }
    assert_eq!(
        Keys::built_in().list().len(),
        BUILT_IN
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))
            .count()
    );
}

#[test]
fn key_ids_are_printed_as_minisign_prints_them() {
    let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    let (id, _) = parse_key(&kp.pk.to_base64()).unwrap();
    let keynum: [u8; 8] = kp.pk.keynum().try_into().unwrap();
    assert_eq!(id, format!("{:016X}", u64::from_le_bytes(keynum)));
    // A whole .pub file works too.
    let file = kp.pk.to_box().unwrap().into_string();
    assert_eq!(parse_key(&file).unwrap().0, id);
    assert!(
        parse_key("RWQ not a key")
            .unwrap_err()
            .contains("not a minisign")
    );
    assert!(parse_key("# only a comment\n").is_err());
}

#[test]
fn a_good_signature_verifies_and_the_manifest_is_read() {
    let (pk, sk) = keypair();
    let m = manifest();
    let r = verify(&m, &sign(&sk, &m), &keys(&pk)).unwrap();
    assert_eq!(r.manifest.version, "2026.11.23-2");
    assert_eq!(r.key_id, parse_key(&pk).unwrap().0);
    r.expect_version("2026.11.23-2").unwrap();
    assert!(matches!(
        r.expect_version("2026.11.23-3"),
        Err(UpdateError::Signature(_))
    ));
}

#[test]
fn one_changed_byte_in_the_manifest_fails_the_signature() {
    let (pk, sk) = keypair();
    let m = manifest();
    let sig = sign(&sk, &m);
    let mut altered = m.clone();
    let at = altered.iter().position(|b| *b == b'9').unwrap();
    altered[at] = b'8';
    let e = verify(&altered, &sig, &keys(&pk)).unwrap_err();
    assert!(e.to_string().contains("does not verify"), "{e}");
    assert_eq!(e.exit_code(), 17);
    assert_eq!(e.kind(), rakkr_protocol::UpdateFailure::Signature);
}

#[test]
fn a_signature_by_an_untrusted_key_names_both_keys() {
    let (pk, _) = keypair();
    let (other_pk, other_sk) = keypair();
    let m = manifest();
    let e = verify(&m, &sign(&other_sk, &m), &keys(&pk))
        .unwrap_err()
        .to_string();
    let (other_id, mine) = (parse_key(&other_pk).unwrap().0, parse_key(&pk).unwrap().0);
    assert!(e.contains(&format!("signed with key {other_id}")), "{e}");
    assert!(e.contains(&mine), "{e}");
    // No keys at all (a release build before its first key).
    let e = verify(&m, &sign(&other_sk, &m), &Keys::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("it trusts: none"), "{e}");
}

#[test]
fn garbage_and_oversized_inputs_are_refused_before_any_crypto() {
    let (pk, sk) = keypair();
    let m = manifest();
    for bad in [
        "",
        "untrusted comment: x\n",
        "untrusted comment: x\nnot base64\n",
    ] {
        let e = verify(&m, bad, &keys(&pk)).unwrap_err().to_string();
        assert!(e.contains("not a minisign signature"), "{bad:?}: {e}");
    }
    let big = vec![b' '; RELEASE_MANIFEST_MAX + 1];
    let e = verify(&big, &sign(&sk, &big), &keys(&pk)).unwrap_err();
    assert!(e.to_string().contains("limit"), "{e}");
    let e = verify(&m, &"s".repeat(SIGNATURE_MAX + 1), &keys(&pk)).unwrap_err();
    assert!(e.to_string().contains("limit"), "{e}");
    // Signed, but not a manifest.
    let e = verify(b"hello", &sign(&sk, b"hello"), &keys(&pk)).unwrap_err();
    assert!(e.to_string().contains("not a release manifest"), "{e}");
}

#[test]
fn admit_takes_only_the_listed_archive_or_binary_of_this_target() {
    let (pk, sk) = keypair();
    let m = manifest();
    let r = verify(&m, &sign(&sk, &m), &keys(&pk)).unwrap();
    assert_eq!(
        r.admit(T, &"AA".repeat(32), 300).unwrap(),
        Admitted::Archive {
            binary_sha256: "bb".repeat(32)
        }
    );
    assert_eq!(r.admit(T, &"bb".repeat(32), 900).unwrap(), Admitted::Binary);
    let e = r.admit(T, &"cc".repeat(32), 300).unwrap_err().to_string();
    assert!(
        e.contains("neither the archive (a.tar.gz) nor the binary"),
        "{e}"
    );
    let e = r.admit(T, &"aa".repeat(32), 301).unwrap_err().to_string();
    assert!(e.contains("301 bytes"), "{e}");
    let e = r
        .admit("aarch64-unknown-linux-musl", &"aa".repeat(32), 300)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no build for aarch64"), "{e}");
}

#[test]
fn configured_keys_count_only_in_development_builds() {
    let (pk, _) = keypair();
    let n = Keys::built_in().list().len();
    let k = Keys::built_in().with_configured(std::slice::from_ref(&pk));
    assert_eq!(
        k.list().len(),
        n + usize::from(HONORS_CONFIGURED_KEYS),
        "honored only without --features static"
    );
}
