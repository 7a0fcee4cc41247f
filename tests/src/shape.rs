//! The controller's node inventory shape (docs/controller-contract.md)
//! as a typed check: every key, type and constraint the controller validates.
//! Extra keys are allowed (ours is a superset).

use serde_json::Value;

struct Check<'a> {
    errors: Vec<String>,
    _v: std::marker::PhantomData<&'a ()>,
}

impl Check<'_> {
    fn err(&mut self, path: &str, msg: &str) {
        self.errors.push(format!("{path}: {msg}"));
    }

    fn non_empty_str(&mut self, v: Option<&Value>, path: &str, required: bool) {
        match v {
            None if !required => {}
            None => self.err(path, "missing"),
            Some(Value::String(s)) if !s.is_empty() => {}
            Some(other) => self.err(path, &format!("expected a non-empty string, got {other}")),
        }
    }

    fn int_ge(&mut self, v: Option<&Value>, path: &str, min: i64, required: bool) {
        match v {
            None if !required => {}
            Some(Value::Number(n)) if n.as_i64().is_some_and(|i| i >= min) => {}
            other => self.err(
                path,
                &format!("expected an integer >= {min}, got {other:?}"),
            ),
        }
    }

    fn one_of(&mut self, v: Option<&Value>, path: &str, allowed: &[&str]) {
        match v.and_then(Value::as_str) {
            Some(s) if allowed.contains(&s) => {}
            other => self.err(path, &format!("expected one of {allowed:?}, got {other:?}")),
        }
    }

    fn array<'v>(&mut self, v: Option<&'v Value>, path: &str) -> &'v [Value] {
        match v {
            Some(Value::Array(a)) => a,
            other => {
                self.err(path, &format!("expected an array, got {other:?}"));
                &[]
            }
        }
    }
}

/// Validates a node inventory against the controller's shape.
pub fn validate_node_inventory(v: &Value) -> Result<(), Vec<String>> {
    let mut c = Check {
        errors: Vec::new(),
        _v: std::marker::PhantomData,
    };
    let Some(obj) = v.as_object() else {
        return Err(vec!["inventory is not an object".into()]);
    };
    for key in ["agentVersion", "alias", "hostname", "id"] {
        c.non_empty_str(obj.get(key), key, true);
    }
    for (i, ip) in c
        .array(obj.get("ipAddresses"), "ipAddresses")
        .iter()
        .enumerate()
    {
        c.non_empty_str(Some(ip), &format!("ipAddresses[{i}]"), true);
    }
    for (i, t) in c.array(obj.get("tags"), "tags").iter().enumerate() {
        c.non_empty_str(Some(t), &format!("tags[{i}]"), true);
    }
    match obj.get("lastSeenAt").and_then(Value::as_str) {
        Some(s)
            if time::OffsetDateTime::parse(
                s,
                &time::format_description::well_known::Iso8601::DEFAULT,
            )
            .is_ok() => {}
        other => c.err(
            "lastSeenAt",
            &format!("expected an ISO 8601 date-time, got {other:?}"),
        ),
    }
    match obj.get("location") {
        Some(Value::Object(l)) => {
            c.non_empty_str(l.get("room"), "location.room", true);
            c.non_empty_str(l.get("site"), "location.site", true);
            c.non_empty_str(l.get("building"), "location.building", false);
            c.non_empty_str(l.get("floor"), "location.floor", false);
        }
        other => c.err("location", &format!("expected an object, got {other:?}")),
    }
    c.one_of(
        obj.get("status"),
        "status",
        &[
            "provisioning",
            "online",
            "offline",
            "degraded",
            "recording",
            "alerting",
        ],
    );
    const BACKENDS: &[&str] = &["alsa", "jack", "pipewire", "unknown"];
    if let Some(rt) = obj.get("runtime") {
        match rt {
            Value::Object(r) => {
                for (i, b) in c
                    .array(r.get("audioBackends"), "runtime.audioBackends")
                    .iter()
                    .enumerate()
                {
                    c.one_of(Some(b), &format!("runtime.audioBackends[{i}]"), BACKENDS);
                }
                for key in ["architecture", "kernelRelease", "osName"] {
                    if let Some(v) = r.get(key)
                        && !v.is_string()
                    {
                        c.err(&format!("runtime.{key}"), "expected a string");
                    }
                }
                c.int_ge(r.get("uptimeSeconds"), "runtime.uptimeSeconds", 0, false);
            }
            other => c.err("runtime", &format!("expected an object, got {other}")),
        }
    }
    for (i, iface) in c
        .array(obj.get("interfaces"), "interfaces")
        .iter()
        .enumerate()
    {
        let p = format!("interfaces[{i}]");
        let Some(f) = iface.as_object() else {
            c.err(&p, "expected an object");
            continue;
        };
        for key in ["alias", "id", "systemName"] {
            c.non_empty_str(f.get(key), &format!("{p}.{key}"), true);
        }
        for key in ["hardwarePath", "serialNumber", "systemRef"] {
            c.non_empty_str(f.get(key), &format!("{p}.{key}"), false);
        }
        c.one_of(f.get("backend"), &format!("{p}.backend"), BACKENDS);
        c.int_ge(f.get("channelCount"), &format!("{p}.channelCount"), 0, true);
        for (j, r) in c
            .array(f.get("sampleRates"), &format!("{p}.sampleRates"))
            .iter()
            .enumerate()
        {
            c.int_ge(Some(r), &format!("{p}.sampleRates[{j}]"), 1, true);
        }
        for (j, ch) in c
            .array(f.get("channels"), &format!("{p}.channels"))
            .iter()
            .enumerate()
        {
            c.non_empty_str(ch.get("alias"), &format!("{p}.channels[{j}].alias"), true);
            c.int_ge(
                ch.get("index"),
                &format!("{p}.channels[{j}].index"),
                1,
                true,
            );
        }
    }
    if c.errors.is_empty() {
        Ok(())
    } else {
        Err(c.errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_catches_violations() {
        let bad = serde_json::json!({
            "agentVersion": "", "alias": "a", "hostname": "h", "id": "i",
            "interfaces": [{"alias": "x", "backend": "coreaudio", "channelCount": -1, "channels": [{"alias": "", "index": 0}],
                            "id": "i", "sampleRates": [0], "systemName": "s"}],
            "ipAddresses": [], "lastSeenAt": "yesterday", "location": {"room": "r"}, "status": "sleeping", "tags": [""]
        });
        let errors = validate_node_inventory(&bad).unwrap_err();
        for needle in [
            "agentVersion",
            "backend",
            "channelCount",
            "channels[0].alias",
            "channels[0].index",
            "sampleRates[0]",
            "lastSeenAt",
            "location.site",
            "status",
            "tags[0]",
        ] {
            assert!(
                errors.iter().any(|e| e.contains(needle)),
                "no error for {needle}: {errors:?}"
            );
        }
    }
}
