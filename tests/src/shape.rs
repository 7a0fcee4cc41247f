//! The controller's node inventory and meter frame shapes
//! (docs/controller-contract.md)
//! as typed checks: every key, type and constraint the controller
//! validates. Extra keys are allowed (ours is a superset).

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

    fn number_in(&mut self, v: Option<&Value>, path: &str, range: (f64, f64), required: bool) {
        match v {
            None if !required => {}
            Some(Value::Number(n)) if n.as_f64().is_some_and(|x| x >= range.0 && x <= range.1) => {}
            other => self.err(
                path,
                &format!(
                    "expected a number in [{}, {}], got {other:?}",
                    range.0, range.1
                ),
            ),
        }
    }

    fn boolean(&mut self, v: Option<&Value>, path: &str, required: bool) {
        match v {
            None if !required => {}
            Some(Value::Bool(_)) => {}
            other => self.err(path, &format!("expected a boolean, got {other:?}")),
        }
    }

    fn date_time(&mut self, v: Option<&Value>, path: &str) {
        match v.and_then(Value::as_str) {
            Some(s)
                if time::OffsetDateTime::parse(
                    s,
                    &time::format_description::well_known::Iso8601::DEFAULT,
                )
                .is_ok() => {}
            other => self.err(
                path,
                &format!("expected an ISO 8601 date-time, got {other:?}"),
            ),
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
    c.date_time(obj.get("lastSeenAt"), "lastSeenAt");
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

/// Validates a meter frame against the controller's shape.
pub fn validate_meter_frame(v: &Value) -> Result<(), Vec<String>> {
    let mut c = Check {
        errors: Vec::new(),
        _v: std::marker::PhantomData,
    };
    let Some(obj) = v.as_object() else {
        return Err(vec!["meter frame is not an object".into()]);
    };
    c.date_time(obj.get("capturedAt"), "capturedAt");
    c.non_empty_str(obj.get("interfaceId"), "interfaceId", true);
    c.non_empty_str(obj.get("nodeId"), "nodeId", true);
    let levels = c.array(obj.get("levels"), "levels");
    if levels.len() > 512 {
        c.err("levels", &format!("{} levels, at most 512", levels.len()));
    }
    const DB: (f64, f64) = (-160.0, 24.0);
    const SCORE: (f64, f64) = (0.0, 1.0);
    for (i, l) in levels.iter().enumerate() {
        let p = format!("levels[{i}]");
        c.int_ge(l.get("channelIndex"), &format!("{p}.channelIndex"), 1, true);
        c.non_empty_str(l.get("label"), &format!("{p}.label"), true);
        c.number_in(l.get("peakDbfs"), &format!("{p}.peakDbfs"), DB, true);
        c.number_in(l.get("rmsDbfs"), &format!("{p}.rmsDbfs"), DB, true);
        c.boolean(l.get("clipping"), &format!("{p}.clipping"), true);
        // NOTE: optional means absent: the controller refuses `null`.
        let q = format!("{p}.quality");
        match l.get("quality") {
            None => {}
            Some(Value::Object(o)) => {
                let g = |k: &str| o.get(k);
                c.number_in(
                    g("crestFactorDb"),
                    &format!("{q}.crestFactorDb"),
                    (0.0, 80.0),
                    true,
                );
                c.number_in(
                    g("estimatedSnrDb"),
                    &format!("{q}.estimatedSnrDb"),
                    (0.0, 80.0),
                    false,
                );
                for k in ["noiseScore", "speechScore", "zeroCrossingRate"] {
                    c.number_in(g(k), &format!("{q}.{k}"), SCORE, true);
                }
                for k in [
                    "humScore",
                    "broadbandNoiseScore",
                    "intelligibilityScore",
                    "staticScore",
                ] {
                    c.number_in(g(k), &format!("{q}.{k}"), SCORE, false);
                }
                c.boolean(g("speechLike"), &format!("{q}.speechLike"), true);
            }
            Some(other) => c.err(&q, &format!("expected an object, got {other}")),
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
    fn the_meter_check_catches_violations() {
        let bad = serde_json::json!({
            "captured_at_ms": 1, "interfaceId": "", "nodeId": "n",
            "levels": [{"channelIndex": 0, "peakDbfs": -200.0, "rmsDbfs": 3.0, "clipping": "no",
                        "quality": {"crestFactorDb": 90.0}},
                       {"channelIndex": 2, "label": "b", "peakDbfs": 0.0, "rmsDbfs": 0.0, "clipping": false,
                        "quality": null}]
        });
        let errors = validate_meter_frame(&bad).unwrap_err();
        for needle in [
            "capturedAt",
            "interfaceId",
            "levels[0].channelIndex",
            "levels[0].label",
            "levels[0].peakDbfs",
            "levels[0].clipping",
            "quality.crestFactorDb",
            "quality.speechLike",
            "levels[1].quality",
        ] {
            assert!(
                errors.iter().any(|e| e.contains(needle)),
                "{needle}: {errors:?}"
            );
        }
        let good = serde_json::json!({
            "capturedAt": "2026-12-06T12:00:00.000Z", "interfaceId": "alsa_pcm_x32file", "nodeId": "n",
            "levels": [{"channelIndex": 1, "label": "Kick", "peakDbfs": -6.0, "rmsDbfs": -20.0, "clipping": false}]
        });
        assert_eq!(validate_meter_frame(&good), Ok(()));
    }

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
