//! The published JSON Schemas of what sessionflow writes (`schemas/`, docs/consuming.md),
//! compiled into the binary so that `sessionflow schema NAME` prints exactly what CI
//! validates the emitted events against.

/// One published schema: the name `sessionflow schema` takes, and the file's text.
#[derive(Clone, Copy, Debug)]
pub struct Schema {
    pub name: &'static str,
    /// What it describes, for the list.
    pub describes: &'static str,
    pub json: &'static str,
}

/// Every published schema, current version.
pub const SCHEMAS: &[Schema] = &[
    Schema {
        name: "session.transition",
        describes: "a record value on the transitions topic",
        json: include_str!("../schemas/session.transition.v1.json"),
    },
    Schema {
        name: "session.anomaly",
        describes: "a record value on the anomalies topic",
        json: include_str!("../schemas/session.anomaly.v1.json"),
    },
    Schema {
        name: "dead-letter.headers",
        describes: "the headers of a record on the dead-letter topic",
        json: include_str!("../schemas/dead-letter.headers.v1.json"),
    },
    Schema {
        name: "replay.dead-letter",
        describes: "a line of `sessionflow replay --dlq FILE`",
        json: include_str!("../schemas/replay.dead-letter.v1.json"),
    },
];

/// The schema called `name`.
pub fn find(name: &str) -> Option<&'static Schema> {
    SCHEMAS.iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_is_json_whose_title_is_its_name_and_whose_id_carries_a_version() {
        for schema in SCHEMAS {
            let value: serde_json::Value = serde_json::from_str(schema.json).unwrap();
            assert_eq!(value["title"], schema.name);
            let id = value["$id"].as_str().unwrap();
            assert!(
                id.starts_with(&format!("urn:sessionflow:schema:{}:v", schema.name)),
                "{id}"
            );
            assert_eq!(
                value["$schema"],
                "https://json-schema.org/draft/2020-12/schema"
            );
        }
    }
}
