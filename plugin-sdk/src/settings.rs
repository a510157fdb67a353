//! [`NoSettings`], the settings type of a plugin that takes none.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};

/// The settings of a plugin that takes none: accepts an absent `settings`
/// (which reaches `init` as `null`) and `{}`, and refuses anything else with
/// a message naming the first key, so an operator's typo is not ignored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoSettings;

impl<'de> serde::Deserialize<'de> for NoSettings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct None_;
        impl<'de> Visitor<'de> for None_ {
            type Value = NoSettings;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("no settings (null or {}); this plugin takes none")
            }

            fn visit_unit<E: de::Error>(self) -> Result<NoSettings, E> {
                Ok(NoSettings)
            }

            fn visit_none<E: de::Error>(self) -> Result<NoSettings, E> {
                Ok(NoSettings)
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NoSettings, A::Error> {
                match map.next_key::<String>()? {
                    None => Ok(NoSettings),
                    Some(key) => Err(de::Error::custom(format!(
                        "unknown setting `{key}`; this plugin takes no settings"
                    ))),
                }
            }
        }
        d.deserialize_any(None_)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_and_an_empty_mapping_are_no_settings_and_anything_else_is_refused() {
        assert_eq!(
            serde_json::from_str::<NoSettings>("null").unwrap(),
            NoSettings
        );
        assert_eq!(
            serde_json::from_str::<NoSettings>("{}").unwrap(),
            NoSettings
        );
        let err = serde_json::from_str::<NoSettings>(r#"{"mode": "strict"}"#).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("unknown setting `mode`; this plugin takes no settings"),
            "{err}"
        );
        let err = serde_json::from_str::<NoSettings>("[1]").unwrap_err();
        assert!(
            err.to_string().contains("no settings (null or {})"),
            "{err}"
        );
    }
}
