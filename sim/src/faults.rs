//! Injected faults: error rates per verb and resource, latency, watches closed early, an unavailable API; set at start and changed at run time.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::status::ApiError;

/// What to break, as the `--faults` file and `PUT /sim/faults` give it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultConfig {
    /// Requests answered with an error instead of being served.
    #[serde(default)]
    pub errors: Vec<ErrorRule>,
    /// Added to every request.
    #[serde(default)]
    pub latency_ms: u64,
    /// Watches are closed this many seconds after they start.
    #[serde(default)]
    pub watch_close_seconds: Option<u64>,
    /// Log streams are cut after this many bytes.
    #[serde(default)]
    pub log_cut_bytes: Option<u64>,
    /// Every request fails with 503 for this many seconds from when the
    /// configuration is set.
    #[serde(default)]
    pub unavailable_seconds: Option<u64>,
    /// Nodes that stop reporting: they become `NotReady` and unreachable, and
    /// their pods fail as the node controller reports them.
    #[serde(default)]
    pub lost_nodes: Vec<String>,
}

/// One kind of injected error.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ErrorRule {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `log`; any when absent.
    #[serde(default)]
    pub verb: Option<String>,
    /// `jobs`, `pods`, ...; any when absent.
    #[serde(default)]
    pub resource: Option<String>,
    /// Fraction of matching requests that fail (0 to 1).
    pub rate: f64,
    /// 500, 503 or 429.
    #[serde(default = "default_code")]
    pub code: u16,
    /// `Retry-After` seconds for 429 and 503.
    #[serde(default)]
    pub retry_after: Option<u64>,
}

fn default_code() -> u16 {
    500
}

struct State {
    config: FaultConfig,
    unavailable_until: Option<Instant>,
    rng: u64,
}

/// The faults in force.
pub struct Faults {
    state: Mutex<State>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults::new(FaultConfig::default())
    }
}

impl Faults {
    /// Faults per `config`, in force from now.
    pub fn new(config: FaultConfig) -> Faults {
        let faults = Faults {
            state: Mutex::new(State {
                config: FaultConfig::default(),
                unavailable_until: None,
                rng: 0x9E37_79B9_7F4A_7C15,
            }),
        };
        faults.set(config);
        faults
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the configuration.
    pub fn set(&self, config: FaultConfig) {
        let mut s = self.lock();
        s.unavailable_until = config
            .unavailable_seconds
            .map(|secs| Instant::now() + Duration::from_secs(secs));
        s.config = config;
    }

    /// The configuration in force.
    pub fn get(&self) -> FaultConfig {
        self.lock().config.clone()
    }

    /// Applies latency and decides whether this request fails.
    pub async fn before(&self, verb: &str, resource: &str) -> Result<(), ApiError> {
        let (latency, outcome) = {
            let mut s = self.lock();
            let latency = Duration::from_millis(s.config.latency_ms);
            let outcome = if s.unavailable_until.is_some_and(|t| Instant::now() < t) {
                Err(ApiError::unavailable(Some(1)))
            } else {
                let rule = s
                    .config
                    .errors
                    .iter()
                    .find(|r| {
                        r.verb.as_deref().is_none_or(|v| v == verb)
                            && r.resource.as_deref().is_none_or(|x| x == resource)
                    })
                    .cloned();
                match rule {
                    Some(rule) if next_unit(&mut s.rng) < rule.rate => Err(match rule.code {
                        429 => ApiError::too_many_requests(rule.retry_after.unwrap_or(1)),
                        503 => ApiError::unavailable(rule.retry_after),
                        _ => ApiError::internal("injected fault"),
                    }),
                    _ => Ok(()),
                }
            };
            (latency, outcome)
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        outcome
    }

    /// How long a watch may stay open.
    pub fn watch_cut(&self) -> Option<Duration> {
        self.lock()
            .config
            .watch_close_seconds
            .map(Duration::from_secs)
    }

    /// The nodes that are lost.
    pub fn lost_nodes(&self) -> Vec<String> {
        self.lock().config.lost_nodes.clone()
    }

    /// After how many bytes a log stream is cut.
    pub fn log_cut(&self) -> Option<u64> {
        self.lock().config.log_cut_bytes
    }
}

/// xorshift64*: reproducible runs, no dependency.
fn next_unit(state: &mut u64) -> f64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
}
