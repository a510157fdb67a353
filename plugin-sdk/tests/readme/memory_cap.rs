use plugin_sdk::quantity::{self, ParsedQuantity};
use plugin_sdk::{Admission, Error, Job, JobContext, Plugin, Verdict, containers};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Settings {
    #[serde(deserialize_with = "quantity::deserialize")]
    max_memory: ParsedQuantity,
}

pub struct MemoryCap(ParsedQuantity);

impl Plugin for MemoryCap {
    type Settings = Settings;
    fn init(s: Settings) -> Result<Self, Error> {
        Ok(MemoryCap(s.max_memory))
    }
}

impl Admission for MemoryCap {
    fn admit(&self, _ctx: &JobContext, job: &mut Job) -> Result<Verdict, Error> {
        for c in containers::all(job) {
            if let Some(asked) = quantity::request(c.container, "memory")? && asked > self.0 {
                return Ok(Verdict::deny(format!("{} requests {asked} of memory; at most {}", c.container.name, self.0)));
            }
        }
        Ok(Verdict::allow())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::serde_json::json;
    use plugin_sdk::testing::{Harness, context, jobs};

    #[test]
    fn the_cap_must_leave_room_for_the_executors_own_containers() {
        let h = Harness::<MemoryCap>::new(json!({"maxMemory": "8Gi"})).unwrap();
        let out = h.admit(&context(), &jobs::steps()).unwrap();
        // Denied on the executor's setup container, before any step: 12Gi by default.
        assert_eq!(out.message.as_deref(), Some("setup-workspace requests 12Gi of memory; at most 8Gi"));
    }
}
