//! The variables by name: whose they are (the seed's, Sourcegraph's, this executor's), which set ones with the executor's prefixes it does not know (with a "did you mean"), and which only Sourcegraph's VM and Docker executors read; it warns and changes nothing.

use serde::Serialize;

/// Whose name a variable is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// The seed document's (Sourcegraph's executors on Kubernetes).
    Seed,
    /// Sourcegraph's executors' in general.
    Sourcegraph,
    /// This executor's own.
    Executor,
}

impl Origin {
    /// As the README's table and `executor config` write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Seed => "seed",
            Origin::Sourcegraph => "Sourcegraph",
            Origin::Executor => "executor",
        }
    }
}

/// The seed document's variables: its table, the single-pod ones it keeps
/// in a comment, and `EXECUTOR_MAXIMUM_NUM_JOBS`, which its "Job Scheduling"
/// names.
const SEED: &[&str] = &[
    "EXECUTOR_KUBERNETES_CONFIG_PATH",
    "EXECUTOR_KUBERNETES_NODE_NAME",
    "EXECUTOR_KUBERNETES_NODE_SELECTOR",
    "EXECUTOR_KUBERNETES_NODE_REQUIRED_AFFINITY_MATCH_EXPRESSIONS",
    "EXECUTOR_KUBERNETES_NODE_REQUIRED_AFFINITY_MATCH_FIELDS",
    "EXECUTOR_KUBERNETES_POD_AFFINITY",
    "EXECUTOR_KUBERNETES_POD_ANTI_AFFINITY",
    "EXECUTOR_KUBERNETES_NODE_TOLERATIONS",
    "EXECUTOR_KUBERNETES_NAMESPACE",
    "EXECUTOR_KUBERNETES_PERSISTENCE_VOLUME_NAME",
    "EXECUTOR_KUBERNETES_RESOURCE_LIMIT_CPU",
    "EXECUTOR_KUBERNETES_RESOURCE_LIMIT_MEMORY",
    "EXECUTOR_KUBERNETES_RESOURCE_REQUEST_CPU",
    "EXECUTOR_KUBERNETES_RESOURCE_REQUEST_MEMORY",
    "KUBERNETES_JOB_DEADLINE",
    "KUBERNETES_RUN_AS_USER",
    "KUBERNETES_RUN_AS_GROUP",
    "KUBERNETES_FS_GROUP",
    "KUBERNETES_KEEP_JOBS",
    "KUBERNETES_JOB_ANNOTATIONS",
    "KUBERNETES_JOB_POD_ANNOTATIONS",
    "KUBERNETES_IMAGE_PULL_SECRETS",
    "KUBERNETES_SINGLE_JOB_POD",
    "KUBERNETES_JOB_VOLUME_TYPE",
    "KUBERNETES_JOB_VOLUME_SIZE",
    "KUBERNETES_ADDITIONAL_JOB_VOLUMES",
    "KUBERNETES_ADDITIONAL_JOB_VOLUME_MOUNTS",
    "KUBERNETES_SINGLE_JOB_STEP_IMAGE",
    "EXECUTOR_MAXIMUM_NUM_JOBS",
];

/// Variables of Sourcegraph's executors in general (its binary deployment's
/// and its services' logging), which the seed refers to.
const SOURCEGRAPH: &[&str] = &[
    "EXECUTOR_FRONTEND_URL",
    "EXECUTOR_FRONTEND_PASSWORD",
    "EXECUTOR_QUEUE_NAME",
    "EXECUTOR_QUEUE_NAMES",
    "EXECUTOR_QUEUE_POLL_INTERVAL",
    "EXECUTOR_MAXIMUM_RUNTIME_PER_JOB",
    "EXECUTOR_NUM_TOTAL_JOBS",
    "EXECUTOR_MAX_ACTIVE_TIME",
    "SRC_LOG_LEVEL",
    "SRC_LOG_FORMAT",
];

/// Whose name `variable` is.
pub fn origin(variable: &str) -> Origin {
    if SEED.contains(&variable) {
        Origin::Seed
    } else if SOURCEGRAPH.contains(&variable) {
        Origin::Sourcegraph
    } else {
        Origin::Executor
    }
}

/// Prefixes of the variables the executor reads: a set variable with one
/// of them that it does not know is most likely a misspelling.
pub const PREFIXES: &[&str] = &["EXECUTOR_", "KUBERNETES_", "SRC_"];

/// Variables that only Sourcegraph's VM (Firecracker) and Docker executors
/// read, each with the setting that does the job here, where there is one.
const ELSEWHERE: &[(&str, Option<&str>)] = &[
    ("EXECUTOR_USE_FIRECRACKER", None),
    ("EXECUTOR_FIRECRACKER_IMAGE", None),
    ("EXECUTOR_FIRECRACKER_KERNEL_IMAGE", None),
    ("EXECUTOR_FIRECRACKER_SANDBOX_IMAGE", None),
    (
        "EXECUTOR_FIRECRACKER_DISK_SPACE",
        Some("KUBERNETES_JOB_VOLUME_SIZE"),
    ),
    ("EXECUTOR_FIRECRACKER_BANDWIDTH_INGRESS", None),
    ("EXECUTOR_FIRECRACKER_BANDWIDTH_EGRESS", None),
    ("EXECUTOR_VM_PREFIX", None),
    ("EXECUTOR_VM_STARTUP_SCRIPT_PATH", None),
    ("EXECUTOR_KEEP_WORKSPACES", Some("KUBERNETES_KEEP_JOBS")),
    (
        "EXECUTOR_JOB_NUM_CPUS",
        Some("EXECUTOR_KUBERNETES_RESOURCE_REQUEST_CPU and EXECUTOR_KUBERNETES_RESOURCE_LIMIT_CPU"),
    ),
    (
        "EXECUTOR_JOB_MEMORY",
        Some(
            "EXECUTOR_KUBERNETES_RESOURCE_REQUEST_MEMORY and EXECUTOR_KUBERNETES_RESOURCE_LIMIT_MEMORY",
        ),
    ),
    (
        "EXECUTOR_DOCKER_HOST_MOUNT_PATH",
        Some("KUBERNETES_JOB_VOLUME_TYPE (each job's workspace is a volume of its own)"),
    ),
    ("EXECUTOR_DOCKER_ADD_HOST_GATEWAY", None),
    ("EXECUTOR_DOCKER_REGISTRY_MIRROR_URL", None),
    (
        "EXECUTOR_DOCKER_AUTH_CONFIG",
        Some("KUBERNETES_IMAGE_PULL_SECRETS"),
    ),
    ("EXECUTOR_CLEANUP_TASK_INTERVAL", None),
    ("SRC_PROF_HTTP", Some("EXECUTOR_DEBUG_LISTEN")),
    ("SRC_LOG_SCOPE_LEVEL", Some("RUST_LOG (levels per module)")),
    ("SRC_LOG_SAMPLING_INITIAL", None),
    ("SRC_LOG_SAMPLING_THEREAFTER", None),
];

/// How similar a name must be to one the executor knows to be suggested:
/// one or two letters wrong in a name of twenty.
const SIMILAR: f64 = 0.8;

/// A warning for every variable in `vars` with one of [`PREFIXES`] that is
/// not in `known`: Sourcegraph's VM and Docker executors' own are named as
/// ignored, with what does their job here; others get the closest known
/// name when one is close. Kubernetes' service links (`KUBERNETES_SERVICE_HOST`,
/// `KUBERNETES_PORT_443_TCP`, `EXECUTOR_QUEUE_PORT` for a Service named
/// `executor-queue`, ...), which the kubelet sets in every pod, are not the
/// operator's and are passed over. Sorted by name.
pub fn warnings<'a>(
    known: &[&str],
    vars: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<String> {
    let mut unknown: Vec<(&str, &str)> = vars
        .into_iter()
        .filter(|(name, _)| PREFIXES.iter().any(|p| name.starts_with(p)))
        .filter(|(name, _)| !known.contains(name))
        .filter(|(name, value)| !service_link(name, value))
        .collect();
    unknown.sort_unstable();
    unknown.dedup_by_key(|(name, _)| *name);
    unknown
        .into_iter()
        .map(|(name, _)| warning(name, known))
        .collect()
}

/// What is said about `name`, a variable with one of [`PREFIXES`] that the
/// executor does not read.
fn warning(name: &str, known: &[&str]) -> String {
    let shown = printable(name);
    let elsewhere =
        "only Sourcegraph's VM and Docker executors read it; here jobs are Kubernetes pods";
    match ELSEWHERE.iter().find(|(n, _)| *n == name) {
        Some((_, Some(instead))) => {
            format!("{shown} is ignored: {elsewhere}, and {instead} does its job")
        }
        Some((_, None)) => {
            format!("{shown} is ignored: {elsewhere}, and nothing takes its place")
        }
        None => match closest(name, known) {
            Some(near) => {
                format!("{shown} is not a variable this executor knows; did you mean {near}?")
            }
            None => format!(
                "{shown} is not a variable this executor knows (`executor config` lists them); it is ignored"
            ),
        },
    }
}

/// [`warnings`] for this process's environment (names and values that are
/// not UTF-8 are none of the executor's).
pub fn process_warnings(known: &[&str]) -> Vec<String> {
    let vars: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().unwrap_or_default())))
        .collect();
    warnings(known, vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// `name` as a warning shows it: control characters and the like escaped,
/// so that a variable's name cannot drive the terminal it is printed on.
fn printable(name: &str) -> String {
    if name.chars().all(|c| c.is_ascii_graphic()) {
        name.to_owned()
    } else {
        name.escape_debug().to_string()
    }
}

/// The known name most like `name`: one that differs by a few letters, or
/// one that `name` is the end of or ends with (the seed's names with and
/// without `EXECUTOR_` are easily swapped).
fn closest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| {
            let affix = k.ends_with(&format!("_{name}")) || name.ends_with(&format!("_{k}"));
            let score = if affix {
                1.0
            } else {
                strsim::normalized_damerau_levenshtein(name, k)
            };
            (score, *k)
        })
        .filter(|(score, _)| *score >= SIMILAR)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// Whether `name=value` is one of the variables the kubelet sets for every
/// Service of the pod's namespace (and for the API server's own, named
/// `kubernetes`): `<SVC>_SERVICE_HOST`, `<SVC>_SERVICE_PORT[_<PORT NAME>]`,
/// `<SVC>_PORT=tcp://...`, `<SVC>_PORT_<n>_<PROTO>[_PROTO|_PORT|_ADDR]`.
fn service_link(name: &str, value: &str) -> bool {
    if name.ends_with("_SERVICE_HOST")
        || name.ends_with("_SERVICE_PORT")
        || name.contains("_SERVICE_PORT_")
    {
        return true;
    }
    if name.ends_with("_PORT")
        && ["tcp://", "udp://", "sctp://"]
            .iter()
            .any(|s| value.starts_with(s))
    {
        return true;
    }
    // `<SVC>_PORT_<n>_<PROTO>` and its three companions.
    let parts: Vec<&str> = name.rsplitn(4, '_').collect();
    let numbered = |port: &str, proto: &str| {
        !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && matches!(proto, "TCP" | "UDP" | "SCTP")
    };
    match parts.as_slice() {
        [proto, port, "PORT", _] => numbered(port, proto),
        [field, proto, port, rest] => {
            matches!(*field, "PROTO" | "PORT" | "ADDR")
                && numbered(port, proto)
                && rest.ends_with("_PORT")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &[
        "EXECUTOR_MAXIMUM_NUM_JOBS",
        "EXECUTOR_KUBERNETES_NAMESPACE",
        "EXECUTOR_QUEUE_NAME",
        "KUBERNETES_JOB_DEADLINE",
        "SRC_LOG_LEVEL",
    ];

    fn warn(vars: &[(&str, &str)]) -> Vec<String> {
        warnings(KNOWN, vars.iter().copied())
    }

    #[test]
    fn a_misspelt_variable_gets_a_did_you_mean() {
        assert_eq!(
            warn(&[("EXECUTOR_MAXIMUM_NUM_JOB", "8")]),
            [
                "EXECUTOR_MAXIMUM_NUM_JOB is not a variable this executor knows; did you mean EXECUTOR_MAXIMUM_NUM_JOBS?"
            ]
        );
        assert_eq!(
            warn(&[("KUBERNETES_NAMESPACE", "ci")]),
            [
                "KUBERNETES_NAMESPACE is not a variable this executor knows; did you mean EXECUTOR_KUBERNETES_NAMESPACE?"
            ]
        );
        assert_eq!(
            warn(&[("SRC_LOG_LEVLE", "dbug")]),
            ["SRC_LOG_LEVLE is not a variable this executor knows; did you mean SRC_LOG_LEVEL?"]
        );
    }

    #[test]
    fn an_unknown_variable_far_from_every_name_is_named_without_a_guess() {
        assert_eq!(
            warn(&[("EXECUTOR_COLOUR", "blue")]),
            [
                "EXECUTOR_COLOUR is not a variable this executor knows (`executor config` lists them); it is ignored"
            ]
        );
    }

    #[test]
    fn sourcegraphs_vm_and_docker_variables_are_named_as_ignored_with_what_does_their_job() {
        let got = warn(&[
            ("EXECUTOR_USE_FIRECRACKER", "true"),
            ("EXECUTOR_JOB_NUM_CPUS", "4"),
            ("EXECUTOR_JOB_MEMORY", "12G"),
            ("EXECUTOR_DOCKER_HOST_MOUNT_PATH", "/data"),
        ]);
        assert_eq!(got.len(), 4, "{got:#?}");
        assert!(got[0].starts_with("EXECUTOR_DOCKER_HOST_MOUNT_PATH is ignored: only Sourcegraph's VM and Docker executors read it") && got[0].contains("KUBERNETES_JOB_VOLUME_TYPE"), "{}", got[0]);
        assert!(
            got[1].contains("EXECUTOR_JOB_MEMORY is ignored")
                && got[1].contains("EXECUTOR_KUBERNETES_RESOURCE_REQUEST_MEMORY"),
            "{}",
            got[1]
        );
        assert!(
            got[2].contains("EXECUTOR_JOB_NUM_CPUS is ignored")
                && got[2].contains("EXECUTOR_KUBERNETES_RESOURCE_LIMIT_CPU"),
            "{}",
            got[2]
        );
        assert!(
            got[3].contains("EXECUTOR_USE_FIRECRACKER is ignored")
                && got[3].contains("nothing takes its place"),
            "{}",
            got[3]
        );
    }

    #[test]
    fn known_variables_other_prefixes_and_the_kubelets_service_links_pass() {
        assert!(
            warn(&[
                ("EXECUTOR_MAXIMUM_NUM_JOBS", "8"),
                ("HOME", "/tmp"),
                ("RUST_LOG", "debug"),
                ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
                ("KUBERNETES_SERVICE_PORT", "443"),
                ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
                ("KUBERNETES_PORT", "tcp://10.96.0.1:443"),
                ("KUBERNETES_PORT_443_TCP", "tcp://10.96.0.1:443"),
                ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
                ("KUBERNETES_PORT_443_TCP_PORT", "443"),
                ("KUBERNETES_PORT_443_TCP_ADDR", "10.96.0.1"),
                // The deploy manifests' own Services: executor-queue, executor-ops.
                ("EXECUTOR_QUEUE_SERVICE_HOST", "10.96.0.7"),
                ("EXECUTOR_QUEUE_PORT", "tcp://10.96.0.7:3180"),
                ("EXECUTOR_OPS_PORT_6060_TCP_ADDR", "10.96.0.8"),
            ])
            .is_empty()
        );
        // A `_PORT` variable whose value is no service address is the operator's.
        assert_eq!(warn(&[("EXECUTOR_QUEUE_PORT", "3180")]).len(), 1);
    }

    #[test]
    fn a_name_with_control_characters_is_shown_escaped() {
        let got = warn(&[("EXECUTOR_\u{1b}[2JX", "1")]);
        assert_eq!(got.len(), 1);
        assert!(got[0].starts_with("EXECUTOR_\\u{1b}[2JX is not"), "{got:?}");
    }
}
