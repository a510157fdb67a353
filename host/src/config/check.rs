//! Collects the problems of every section's checks so that all are reported at once; it knows no variable itself.

use super::parse;

/// One invalid setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The environment variable (flags share its name in messages).
    pub variable: &'static str,
    /// What is wrong, naming the value and the expected form.
    pub message: String,
}

/// Every invalid setting, found in one pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration ({} problem(s)):\n  - {}", .0.len(), .0.iter().map(|p| format!("{}: {}", p.variable, p.message)).collect::<Vec<_>>().join("\n  - "))]
pub struct ConfigError(pub Vec<Problem>);

/// The problems found so far, in the order the sections were checked, and
/// the warnings: settings that are valid but that an operator should hear about.
#[derive(Debug, Default)]
pub(super) struct Checker {
    problems: Vec<Problem>,
    warnings: Vec<String>,
}

impl Checker {
    /// Records `result`'s error against `variable`.
    pub(super) fn check<T>(
        &mut self,
        variable: &'static str,
        result: Result<T, String>,
    ) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(message) => {
                self.problem(variable, message);
                None
            }
        }
    }

    /// Records a problem found by a check across values.
    pub(super) fn problem(&mut self, variable: &'static str, message: String) {
        self.problems.push(Problem { variable, message });
    }

    /// Records a warning found while checking (the values alone cannot tell
    /// it afterwards, such as which of two names of a setting was used).
    pub(super) fn warn(&mut self, message: String) {
        self.warnings.push(message);
    }

    /// The warnings recorded so far, leaving none.
    pub(super) fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// Parses a value that may be absent; blank counts as absent.
    pub(super) fn optional<T>(
        &mut self,
        variable: &'static str,
        raw: &Option<String>,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let value = raw.as_deref().map(str::trim).filter(|v| !v.is_empty())?;
        self.check(variable, f(value))
    }

    /// Reads strict JSON into `T`; absent or invalid gives `T`'s default.
    pub(super) fn json<T: serde::de::DeserializeOwned + Default>(
        &mut self,
        variable: &'static str,
        raw: &Option<String>,
        expected: &str,
    ) -> T {
        self.optional(variable, raw, |v| {
            parse::strict_json(v, expected).map_err(|e| format!("{v:?} {e}"))
        })
        .unwrap_or_default()
    }

    /// `Err` with every problem, if there was any.
    pub(super) fn finish(self) -> Result<(), ConfigError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(self.problems))
        }
    }
}
