//! The published schemas (`schemas/`, compiled into `sessionflow::schema`) as validators, so
//! that tests check what the code writes against exactly what `sessionflow schema` prints.
//! Beyond validation, every field written must be declared: the published schemas stay open
//! for readers (adding an optional field is compatible), but the code may not write a field
//! the schema does not describe.

use std::collections::BTreeMap;

use jsonschema::Validator;
use serde_json::Value;
use sessionflow::schema;

/// One schema, parsed and compiled.
pub struct Compiled {
    pub name: &'static str,
    document: Value,
    validator: Validator,
}

impl Compiled {
    pub fn load(name: &str) -> Compiled {
        let published = schema::find(name).unwrap_or_else(|| panic!("no schema {name}"));
        let document: Value = serde_json::from_str(published.json).unwrap();
        let validator = jsonschema::draft202012::new(&document)
            .unwrap_or_else(|e| panic!("schema {name} does not compile: {e}"));
        Compiled {
            name: published.name,
            document,
            validator,
        }
    }

    /// Panics naming the instance and every violation, or a field the schema does not declare.
    pub fn check(&self, instance: &Value) {
        let violations: Vec<String> = self
            .validator
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            violations.is_empty(),
            "{} violates schema {}: {violations:?}",
            instance,
            self.name
        );
        let mut undeclared = Vec::new();
        undeclared_fields(
            &self.document,
            &self.document,
            instance,
            "",
            &mut undeclared,
        );
        assert!(
            undeclared.is_empty(),
            "{} carries fields schema {} does not declare: {undeclared:?}",
            instance,
            self.name
        );
    }
}

/// Every published schema, compiled once per test.
pub struct Schemas {
    pub transition: Compiled,
    pub anomaly: Compiled,
    pub dead_letter_headers: Compiled,
    pub replay_dead_letter: Compiled,
}

impl Schemas {
    pub fn load() -> Schemas {
        Schemas {
            transition: Compiled::load("session.transition"),
            anomaly: Compiled::load("session.anomaly"),
            dead_letter_headers: Compiled::load("dead-letter.headers"),
            replay_dead_letter: Compiled::load("replay.dead-letter"),
        }
    }

    /// Checks a derived event against the schema its `type` names; returns that type.
    pub fn check_event(&self, event: &Value) -> &'static str {
        let compiled = match event["type"].as_str() {
            Some("session.transition") => &self.transition,
            Some("session.anomaly") => &self.anomaly,
            _ => panic!("not a derived event type: {event}"),
        };
        compiled.check(event);
        compiled.name
    }

    /// Checks one line of a derived-events NDJSON text, returning its type.
    pub fn check_event_line(&self, line: &[u8]) -> &'static str {
        let event: Value = serde_json::from_slice(line)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(line)));
        self.check_event(&event)
    }

    /// Checks the headers of a dead-letter record (names to values read as UTF-8).
    pub fn check_dead_letter_headers(&self, headers: &BTreeMap<String, String>) {
        let map: serde_json::Map<String, Value> = headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        self.dead_letter_headers.check(&Value::Object(map));
    }
}

/// Collects the paths of `instance`'s object keys that `schema` (resolved within `root`)
/// does not list under `properties`.
fn undeclared_fields(
    root: &Value,
    schema: &Value,
    instance: &Value,
    path: &str,
    out: &mut Vec<String>,
) {
    let schema = resolve(root, schema);
    let Some(object) = instance.as_object() else {
        return;
    };
    // A nullable or alternative subschema: the branch that describes objects.
    if schema.get("properties").is_none() {
        for key in ["oneOf", "anyOf"] {
            for branch in schema[key].as_array().into_iter().flatten() {
                if resolve(root, branch).get("properties").is_some() {
                    undeclared_fields(root, branch, instance, path, out);
                    return;
                }
            }
        }
        return;
    }
    let properties = &schema["properties"];
    for (key, value) in object {
        match properties.get(key) {
            None => out.push(format!("{path}/{key}")),
            Some(sub) => undeclared_fields(root, sub, value, &format!("{path}/{key}"), out),
        }
    }
}

/// Follows a local `$ref` (`#/$defs/NAME`).
fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.strip_prefix('#').expect("only local references");
            root.pointer(pointer)
                .unwrap_or_else(|| panic!("dangling {reference}"))
        }
        None => schema,
    }
}
