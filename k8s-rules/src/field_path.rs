//! Field paths written as the API server writes them in its errors (`spec.template.spec.containers[0].image`).

use serde_ignored::Path;

/// `spec.template.spec.containers[0].foo`: where `serde_ignored` found a
/// field, written as a user would look it up in their document.
pub fn dotted(path: &Path<'_>) -> String {
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", dotted(parent)),
        Path::Map { parent, key } => {
            let p = dotted(parent);
            if p.is_empty() {
                key.clone()
            } else {
                format!("{p}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => dotted(parent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unknown_fields(json: &str) -> Vec<String> {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct Spec {
            containers: Vec<Container>,
        }
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct Container {
            name: String,
        }
        let mut found = Vec::new();
        let mut de = serde_json::Deserializer::from_str(json);
        let _: Spec = serde_ignored::deserialize(&mut de, |p| found.push(dotted(&p)))
            .unwrap_or_else(|e| panic!("{json} should parse: {e}"));
        found
    }

    #[test]
    fn an_unknown_field_is_named_by_its_dotted_path_with_indexes() {
        assert_eq!(
            unknown_fields(r#"{"containers":[{"name":"a"},{"name":"b","imag":"x"}],"extra":1}"#),
            ["containers[1].imag", "extra"]
        );
    }
}
