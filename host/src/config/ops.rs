//! The operations section: the address of the port that serves health probes and metrics; it checks this variable only.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use clap::Args;

use super::check::Checker;

pub(super) const DEBUG_LISTEN: &str = "EXECUTOR_DEBUG_LISTEN";
/// Set by the kubelet in every pod: with it, in-cluster configuration applies.
const SERVICE_HOST: &str = "KUBERNETES_SERVICE_HOST";
/// Sourcegraph's `http-debug` port, which its operators already open for probes and scrapes.
pub const DEFAULT_OPS_PORT: u16 = 6060;
/// The value that turns the port off.
const OFF: &str = "off";

/// The operations settings as text, from a flag or else its environment variable.
#[derive(Debug, Clone, Default, Args)]
pub struct RawOps {
    /// Address of the operations port (/healthz, /readyz, /metrics): IP:PORT, :PORT (every interface), or `off` (default: 0.0.0.0:6060 in a pod, where probes come from the node, else 127.0.0.1:6060).
    #[arg(long, env = DEBUG_LISTEN)]
    pub debug_listen: Option<String>,
}

/// Where the operations port listens; `None` when it is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpsConfig {
    /// The address (port 0: any free port).
    pub listen: Option<SocketAddr>,
}

impl OpsConfig {
    /// The variable that sets [`OpsConfig::listen`], for messages that tell
    /// an operator what to change.
    pub const VARIABLE: &'static str = DEBUG_LISTEN;
}

impl RawOps {
    /// Checks the address; `in_pod` chooses the default bind address
    /// (probes reach a pod on its own IP, so loopback would fail them; on a
    /// laptop loopback keeps the metrics private). `None` when invalid.
    pub(super) fn check(&self, c: &mut Checker, in_pod: bool) -> Option<OpsConfig> {
        let value = self.debug_listen.as_deref().map(str::trim);
        let listen = match value {
            None | Some("") => Some(default_listen(in_pod)),
            Some(v) if v.eq_ignore_ascii_case(OFF) => None,
            Some(v) => Some(c.check(DEBUG_LISTEN, parse_listen(v))?),
        };
        Some(OpsConfig { listen })
    }
}

/// Whether this process runs in a pod by the kubelet's own variable
/// (`EXECUTOR_POD_NAME` is the other sign, checked by the caller).
pub(super) fn in_cluster_environment() -> bool {
    std::env::var_os(SERVICE_HOST).is_some_and(|v| !v.is_empty())
}

fn default_listen(in_pod: bool) -> SocketAddr {
    let ip = if in_pod {
        Ipv4Addr::UNSPECIFIED
    } else {
        Ipv4Addr::LOCALHOST
    };
    SocketAddr::new(IpAddr::V4(ip), DEFAULT_OPS_PORT)
}

/// `IP:PORT`, or `:PORT` for every interface, as Go servers (and so
/// Sourcegraph's `SRC_PROF_HTTP`) accept it.
fn parse_listen(v: &str) -> Result<SocketAddr, String> {
    let bad = || {
        format!(
            "{v:?} is not an address; expected IP:PORT such as 127.0.0.1:{DEFAULT_OPS_PORT}, :PORT, or `{OFF}`"
        )
    };
    if let Some(port) = v.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| bad())?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    v.parse().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(value: Option<&str>, in_pod: bool) -> Result<Option<SocketAddr>, String> {
        let mut c = Checker::default();
        let raw = RawOps {
            debug_listen: value.map(str::to_owned),
        };
        let got = raw.check(&mut c, in_pod);
        c.finish().map_err(|e| e.to_string())?;
        Ok(got.and_then(|o| o.listen))
    }

    #[test]
    fn the_default_is_every_interface_in_a_pod_and_loopback_elsewhere() {
        assert_eq!(check(None, true), Ok(Some("0.0.0.0:6060".parse().unwrap())));
        assert_eq!(
            check(None, false),
            Ok(Some("127.0.0.1:6060".parse().unwrap()))
        );
        assert_eq!(
            check(Some(" "), false),
            Ok(Some("127.0.0.1:6060".parse().unwrap()))
        );
    }

    #[test]
    fn an_address_a_bare_port_or_off_are_accepted() {
        assert_eq!(
            check(Some("10.0.0.1:9090"), false),
            Ok(Some("10.0.0.1:9090".parse().unwrap()))
        );
        assert_eq!(
            check(Some(":7070"), false),
            Ok(Some("0.0.0.0:7070".parse().unwrap()))
        );
        assert_eq!(check(Some("OFF"), true), Ok(None));
    }

    #[test]
    fn anything_else_is_a_problem_naming_the_variable_and_the_forms() {
        let err = check(Some("localhost"), false).unwrap_err();
        assert!(
            err.contains("EXECUTOR_DEBUG_LISTEN: \"localhost\" is not an address")
                && err.contains("`off`"),
            "{err}"
        );
        assert!(check(Some(":http"), false).is_err());
    }
}
