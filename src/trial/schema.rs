//! JSON Schemas of trial and environment files, derived from the very types that parse them
//! (so an editor's completion and validation cannot drift from the tool), and the Markdown
//! reference of every field generated from the same schemas (`docs/reference.md`, checked to be
//! current by the test suite).

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::model::{EnvironmentFile, TrialFile};

/// The JSON Schema of trial files.
pub fn trial_schema() -> Value {
    let mut s = serde_json::to_value(schemars::schema_for!(TrialFile)).expect("schema serializes");
    s["title"] = json!("trialrunner trial");
    s
}

/// The JSON Schema of environment files.
pub fn environment_schema() -> Value {
    let mut s =
        serde_json::to_value(schemars::schema_for!(EnvironmentFile)).expect("schema serializes");
    s["title"] = json!("trialrunner environment");
    s
}

/// Follows a `$ref` into the schema's `$defs`.
fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap_or(r);
            resolve(root, &root["$defs"][name])
        }
        None => node,
    }
}

/// The part of a schema that says what a field is: without `null` alternatives of options.
fn essential<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    let node = resolve(root, node);
    for key in ["anyOf", "oneOf"] {
        if let Some(alts) = node.get(key).and_then(Value::as_array) {
            let real: Vec<&Value> = alts
                .iter()
                .filter(|a| a.get("type") != Some(&json!("null")))
                .collect();
            if real.len() == 1 {
                return essential(root, real[0]);
            }
        }
    }
    node
}

/// The values of an enumeration (`enum`, or alternatives that are all constants).
fn constants(node: &Value) -> Option<Vec<String>> {
    if let Some(values) = node.get("enum").and_then(Value::as_array) {
        return Some(
            values
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
        );
    }
    let alts = node
        .get("oneOf")
        .or_else(|| node.get("anyOf"))?
        .as_array()?;
    alts.iter()
        .map(|a| a.get("const").and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// A short name of a value's type.
fn type_name(root: &Value, node: &Value) -> String {
    if let Some(r) = node.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        let target = essential(root, node);
        if let Some(values) = constants(target) {
            return values
                .iter()
                .map(|v| format!("`{v}`"))
                .collect::<Vec<_>>()
                .join(" \\| ");
        }
        if target.get("properties").is_some() {
            return "mapping".into();
        }
        if target.get("anyOf").is_some()
            && !["Duration", "Rate", "SpawnRate", "Wait"].contains(&name)
        {
            return type_name(root, target);
        }
        return name.to_string();
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(alts) = node.get(key).and_then(Value::as_array) {
            let names: Vec<String> = alts
                .iter()
                .filter(|a| a.get("type") != Some(&json!("null")))
                .map(|a| type_name(root, a))
                .collect();
            return names.join(" or ");
        }
    }
    if let Some(c) = node.get("const") {
        return format!("`{}`", c.as_str().unwrap_or(&c.to_string()));
    }
    if let Some(values) = node.get("enum").and_then(Value::as_array) {
        return values
            .iter()
            .filter_map(Value::as_str)
            .map(|v| format!("`{v}`"))
            .collect::<Vec<_>>()
            .join(" \\| ");
    }
    match node.get("type") {
        Some(Value::String(t)) if t == "array" => {
            format!("list of {}", type_name(root, &node["items"]))
        }
        Some(Value::String(t))
            if t == "object"
                && node
                    .get("additionalProperties")
                    .is_some_and(Value::is_object) =>
        {
            format!("map of {}", type_name(root, &node["additionalProperties"]))
        }
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "value".into(),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// Rows `(field, type, default, description)` of every field under `node`, depth first.
fn rows(root: &Value, node: &Value, prefix: &str, out: &mut Vec<[String; 4]>) {
    let node = essential(root, node);
    let Some(props) = node.get("properties").and_then(Value::as_object) else {
        return;
    };
    let required: Vec<&str> = node
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (name, field) in props {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let target = essential(root, field);
        let mut description = field
            .get("description")
            .or_else(|| target.get("description"))
            .and_then(Value::as_str)
            .map(one_line)
            .unwrap_or_default();
        // What each allowed value means.
        if let Some(alts) = target.get("oneOf").and_then(Value::as_array) {
            let meanings: Vec<String> = alts
                .iter()
                .filter_map(|a| {
                    Some(format!(
                        "`{}`: {}",
                        a.get("const")?.as_str()?,
                        one_line(a.get("description")?.as_str()?).trim_end_matches('.')
                    ))
                })
                .collect();
            if !meanings.is_empty() {
                description.push_str(&format!(" ({})", meanings.join("; ")));
            }
        }
        let default = match field.get("default") {
            Some(Value::Null) | None if required.contains(&name.as_str()) => "required".into(),
            Some(Value::Null) | None => "—".into(),
            // A section's default is its fields' defaults, listed below it.
            Some(Value::Object(m)) if !m.is_empty() => "see below".into(),
            Some(Value::String(t)) if t.is_empty() => "empty".into(),
            Some(v) => format!(
                "`{}`",
                v.as_str().map(str::to_string).unwrap_or(v.to_string())
            ),
        };
        let examples = target
            .get("examples")
            .and_then(Value::as_array)
            .map(|e| {
                let ex: Vec<String> = e
                    .iter()
                    .map(|x| {
                        format!(
                            "`{}`",
                            x.as_str().map(str::to_string).unwrap_or(x.to_string())
                        )
                    })
                    .collect();
                format!(" Examples: {}.", ex.join(", "))
            })
            .unwrap_or_default();
        out.push([
            format!("`{path}`"),
            type_name(root, field),
            default,
            format!("{description}{examples}"),
        ]);
        rows(root, field, &path, out);
    }
}

fn table(root: &Value) -> String {
    let mut r = Vec::new();
    rows(root, root, "", &mut r);
    let mut s = String::from("| field | type | default | what it is |\n|---|---|---|---|\n");
    for [f, t, d, w] in r {
        let _ = writeln!(s, "| {f} | {t} | {d} | {w} |");
    }
    s
}

/// The Markdown reference of every field of both files, with an example of each.
pub fn reference_markdown() -> String {
    let mut s = String::from(
        "# Trial and environment reference\n\n\
         Generated by `trialrunner schema reference` from the types that parse the files (the\n\
         test suite fails when this page is not current). Editors validate and complete the\n\
         files with the JSON Schemas beside it: start a file with\n\
         `# yaml-language-server: $schema=…/docs/trial.schema.json` (or `environment.schema.json`).\n\n\
         Durations are written `150s`, `2m30s`, `500ms` (or a number of seconds); rates `10/s`,\n\
         `600/m`. Unknown keys are errors; every error names the file, line, column and field.\n\n",
    );
    s.push_str("## Trial files\n\nA trial says what to do: capacity, stores, load runs, metrics, thresholds.\n\n");
    s.push_str(&table(&trial_schema()));
    s.push_str("\nExample (`trials/trial-1-users-pinned-3.yaml`):\n\n```yaml\n");
    s.push_str(include_str!("../../trials/trial-1-users-pinned-3.yaml"));
    s.push_str(
        "```\n\nWith plain HTTP tasks and thresholds (`trials/local-http.yaml`):\n\n```yaml\n",
    );
    s.push_str(include_str!("../../trials/local-http.yaml"));
    s.push_str("```\n\n## Environment files\n\nAn environment says where things are, never what to do.\n\n");
    s.push_str(&table(&environment_schema()));
    s.push_str("\nExample (`templates/veraison-aws.yaml`):\n\n```yaml\n");
    s.push_str(include_str!("../../templates/veraison-aws.yaml"));
    s.push_str("```\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_section_of_both_files_is_in_the_reference() {
        let r = reference_markdown();
        for field in [
            "`runs.users`",
            "`runs.arrival.rate`",
            "`infra.verification.pin`",
            "`stores.clear`",
            "`http-tasks`",
            "`thresholds`",
            "`metrics-settle`",
            "`services.provisioning.tls.ca-file`",
            "`stores.postgres.tunnel.ssh`",
            "`aws.account`",
        ] {
            assert!(r.contains(field), "{field} missing");
        }
        assert!(
            r.contains("| `runs.duration` | Duration | required |"),
            "{r}"
        );
    }
}
