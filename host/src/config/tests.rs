//! The configuration as an operator meets it: every variable parsed, every problem reported at once, the README table in step with the code.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::{CommandFactory, Parser};

use super::*;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    raw: RawConfig,
}

fn parse(args: &[&str]) -> Result<Config, ConfigError> {
    let cli = Cli::try_parse_from(std::iter::once("executor").chain(args.iter().copied())).unwrap();
    Config::from_raw(&cli.raw)
}

#[test]
fn defaults_are_the_seeds() {
    let c = parse(&[]).unwrap();
    let k = &c.kubernetes;
    assert_eq!(k.namespace, "default");
    assert_eq!(k.persistence_volume_name, "sg-executor-pvc");
    assert_eq!(
        k.resources.limit_memory.as_ref().unwrap().quantity.0,
        "12Gi"
    );
    assert_eq!(
        k.resources.request_memory.as_ref().unwrap().quantity.0,
        "12Gi"
    );
    assert!(k.resources.limit_cpu.is_none() && k.resources.request_cpu.is_none());
    assert_eq!(k.job_deadline, Duration::from_secs(1200));
    assert_eq!(
        (k.fs_group, k.run_as_user, k.keep_jobs),
        (Some(1000), None, false)
    );
    assert_eq!(
        (k.volume_type, k.volume_size.quantity.0.as_str()),
        (VolumeType::EmptyDir, "5Gi")
    );
    assert_eq!(c.queue.poll_interval, Duration::from_secs(1));
    assert_eq!(c.queue.maximum_num_jobs, 1);
    assert_eq!(c.queue.maximum_runtime_per_job, Duration::from_secs(1800));
    assert_eq!(
        (c.queue.num_total_jobs, c.queue.max_active_time),
        (None, None)
    );
}

#[test]
fn values_are_parsed_into_types() {
    let c = parse(&[
        "--node-selector", " disk = ssd , zone=a ",
        "--node-required-affinity-match-expressions", r#"[{"key": "foo", "operator": "In", "values": ["bar"]}]"#,
        "--pod-anti-affinity", r#"[{"labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": "kubernetes.io/hostname"}]"#,
        "--node-tolerations", r#"[{"key": "foo", "operator": "Equal", "value": "bar", "effect": "NoSchedule"}]"#,
        "--resource-limit-cpu", "2", "--resource-request-cpu", "500m",
        "--job-annotations", r#"{"acme.com/team": "infra"}"#,
        "--image-pull-secrets", "a, b",
        "--job-volume-type", "pvc",
        "--queue-names", "batches, codeintel",
        "--frontend-url", "https://sourcegraph.example.com",
        "--maximum-runtime-per-job", "1h30m",
    ])
    .unwrap();
    let k = &c.kubernetes;
    assert_eq!(
        k.node_selector,
        BTreeMap::from([("disk".into(), "ssd".into()), ("zone".into(), "a".into())])
    );
    assert_eq!(
        k.required_match_expressions[0].values.as_deref(),
        Some(&["bar".to_owned()][..])
    );
    assert_eq!(
        k.pod_anti_affinity[0].topology_key,
        "kubernetes.io/hostname"
    );
    assert_eq!(k.tolerations[0].effect.as_deref(), Some("NoSchedule"));
    assert_eq!(k.image_pull_secrets, ["a", "b"]);
    assert_eq!(k.volume_type, VolumeType::Pvc);
    assert_eq!(k.job_annotations["acme.com/team"], "infra");
    assert_eq!((c.queue.queue_names.len(), c.queue.multi_queue), (2, true));
    assert_eq!(c.queue.maximum_runtime_per_job, Duration::from_secs(5400));
}

#[test]
fn every_problem_is_reported_at_once_with_variable_value_and_expected_form() {
    let err = parse(&[
        "--node-selector",
        "foo",
        "--node-required-affinity-match-fields",
        r#"[{"key": "metadata.name", "operater": "In"}]"#,
        "--pod-affinity",
        r#"[{"labelSelector": {}}]"#,
        "--node-tolerations",
        r#"[{"key": "a", "operator": "Maybe"}]"#,
        "--resource-limit-memory",
        "12GB",
        "--job-deadline=-5",
        "--keep-jobs",
        "yes",
        "--job-pod-annotations",
        r#"{"a": 1}"#,
        "--job-volume-type",
        "hostPath",
        "--additional-job-volume-mounts",
        r#"[{"name": "cache", "mountPath": "/cache"}]"#,
        "--queue-name",
        "batches",
        "--queue-names",
        "a,b",
        "--queue-poll-interval",
        "often",
        "--maximum-num-jobs",
        "0",
        "--frontend-url",
        "ftp://x",
    ])
    .unwrap_err();
    let text = err.to_string();
    for needle in [
        "EXECUTOR_KUBERNETES_NODE_SELECTOR: \"foo\" is not key=value",
        "EXECUTOR_KUBERNETES_NODE_REQUIRED_AFFINITY_MATCH_FIELDS: \"[{\\\"key\\\": \\\"metadata.name\\\", \\\"operater\\\": \\\"In\\\"}]\" has unknown field(s) [0].operater",
        "EXECUTOR_KUBERNETES_POD_AFFINITY:",
        "topologyKey",
        "EXECUTOR_KUBERNETES_NODE_TOLERATIONS: [0].operator: \"Maybe\"",
        "EXECUTOR_KUBERNETES_RESOURCE_LIMIT_MEMORY: \"12GB\" is not a Kubernetes quantity",
        "KUBERNETES_JOB_DEADLINE: \"-5\" is out of range",
        "KUBERNETES_KEEP_JOBS: \"yes\" is not a boolean",
        "KUBERNETES_JOB_POD_ANNOTATIONS:",
        "KUBERNETES_JOB_VOLUME_TYPE: \"hostPath\" is not a volume type; expected emptyDir or pvc",
        "KUBERNETES_ADDITIONAL_JOB_VOLUME_MOUNTS: mount \"cache\" names no volume",
        "EXECUTOR_QUEUE_NAMES: set together with EXECUTOR_QUEUE_NAME",
        "EXECUTOR_QUEUE_POLL_INTERVAL: \"often\" is not a duration",
        "EXECUTOR_MAXIMUM_NUM_JOBS: \"0\" is out of range",
        "EXECUTOR_FRONTEND_URL: \"ftp://x\" is not an http(s) URL",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert_eq!(err.0.len(), 14, "one problem per invalid variable: {text}");
}

#[test]
fn unknown_json_fields_are_errors_with_their_path() {
    let err = parse(&[
        "--node-required-affinity-match-expressions",
        r#"[{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "In", "valuez": ["x"]}]"#,
    ])
    .unwrap_err();
    assert!(
        err.to_string().contains("unknown field(s) [1].valuez"),
        "{err}"
    );
}

#[test]
fn a_request_above_its_limit_is_an_error() {
    let err = parse(&[
        "--resource-limit-cpu",
        "1",
        "--resource-request-cpu",
        "1500m",
        "--resource-request-memory",
        "16Gi",
    ])
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(
            "EXECUTOR_KUBERNETES_RESOURCE_REQUEST_CPU: \"1500m\" is above its limit \"1\""
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "EXECUTOR_KUBERNETES_RESOURCE_REQUEST_MEMORY: \"16Gi\" is above its limit \"12Gi\""
        ),
        "{text}"
    );
    assert!(
        parse(&[
            "--resource-limit-cpu",
            "1",
            "--resource-request-cpu",
            "1000m"
        ])
        .is_ok()
    );
}

#[test]
fn the_other_kinds_of_invalid_value_are_named_too() {
    let err = parse(&[
        "--namespace",
        "CI_Jobs",
        "--run-as-user",
        "root",
        "--run-as-group=-1",
        "--fs-group",
        "1e3",
        "--job-annotations",
        r#"{"bad key!": "x"}"#,
        "--image-pull-secrets",
        "ok, Not_A_Name",
        "--job-volume-size",
        "5 GiB",
        "--additional-job-volumes",
        r#"[{"name": "workspace", "emptyDir": {}}]"#,
        "--additional-job-volume-mounts",
        r#"[{"name": "workspace", "mountPath": "/job/"}]"#,
        "--single-job-step-image",
        "my image",
        "--queue-name",
        "Batches!",
        "--maximum-runtime-per-job",
        "forever",
        "--num-total-jobs=-3",
        "--max-active-time",
        "1 fortnight",
        "--plugins",
        "/nonexistent/plugins.yaml",
        "--resource-limit-cpu",
        "two",
    ])
    .unwrap_err();
    let text = err.to_string();
    for needle in [
        "EXECUTOR_KUBERNETES_NAMESPACE: \"CI_Jobs\" is not a namespace name",
        "KUBERNETES_RUN_AS_USER: \"root\" is out of range; expected a whole number",
        "KUBERNETES_RUN_AS_GROUP: \"-1\" is out of range",
        "KUBERNETES_FS_GROUP: \"1e3\" is out of range",
        "KUBERNETES_JOB_ANNOTATIONS: \"bad key!\" is not a valid annotation key",
        "KUBERNETES_IMAGE_PULL_SECRETS: \"Not_A_Name\" is not a Secret name",
        "KUBERNETES_JOB_VOLUME_SIZE: \"5 GiB\" is not a Kubernetes quantity",
        "KUBERNETES_ADDITIONAL_JOB_VOLUMES: volume name \"workspace\" is the executor's own",
        "KUBERNETES_ADDITIONAL_JOB_VOLUME_MOUNTS: mount path \"/job/\" is the executor's own",
        "KUBERNETES_SINGLE_JOB_STEP_IMAGE: \"my image\" is not an image reference",
        "EXECUTOR_QUEUE_NAME: \"Batches!\" is not a queue name",
        "EXECUTOR_MAXIMUM_RUNTIME_PER_JOB: \"forever\" is not a duration",
        "EXECUTOR_NUM_TOTAL_JOBS: \"-3\" is out of range",
        "EXECUTOR_MAX_ACTIVE_TIME: \"1 fortnight\" is not a duration",
        "EXECUTOR_PLUGINS_CONFIG: /nonexistent/plugins.yaml does not exist",
        "EXECUTOR_KUBERNETES_RESOURCE_LIMIT_CPU: \"two\" is not a Kubernetes quantity",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert_eq!(err.0.len(), 16, "{text}");
}

#[test]
fn settings_that_weaken_defaults_or_do_nothing_are_warned_about() {
    assert!(parse(&[]).unwrap().warnings().is_empty());
    let warnings = parse(&[
        "--run-as-user",
        "0",
        "--persistence-volume-name",
        "shared",
        "--keep-jobs",
        "true",
    ])
    .unwrap()
    .warnings()
    .join("\n");
    for needle in [
        "KUBERNETES_RUN_AS_USER=0: every container of every job runs as root",
        "EXECUTOR_KUBERNETES_PERSISTENCE_VOLUME_NAME=\"shared\" has no effect",
        "KUBERNETES_KEEP_JOBS=true",
    ] {
        assert!(
            warnings.contains(needle),
            "missing {needle:?} in:\n{warnings}"
        );
    }
}

/// The README's configuration table lists exactly the variables the code
/// reads, with the same defaults.
#[test]
fn the_readme_table_matches_the_code() {
    let cmd = Cli::command();
    let code: BTreeMap<String, String> = cmd
        .get_arguments()
        .filter_map(|a| {
            let env = a.get_env()?.to_string_lossy().into_owned();
            let default = a
                .get_default_values()
                .first()
                .map(|d| d.to_string_lossy().into_owned())
                .unwrap_or_default();
            Some((env, default))
        })
        .chain(
            kubernetes::CHECKED_DEFAULTS
                .iter()
                .map(|(v, d)| ((*v).to_owned(), (*d).to_owned())),
        )
        .collect();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = readme
        .split("## Configuration\n")
        .nth(1)
        .expect("README has a ## Configuration section");
    // The table | variable | default | whose | meaning |
    let mut whose = BTreeMap::new();
    let table: BTreeMap<String, String> = section
        .lines()
        .skip_while(|l| !l.starts_with("| variable | default |"))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let default = cells.get(2)?.trim_matches('`');
            whose.insert(name.to_owned(), cells.get(3)?.to_string());
            let meaning = cells.get(4)?;
            assert!(!meaning.is_empty(), "README: {name} has no meaning");
            Some((
                name.to_owned(),
                if default == "—" {
                    String::new()
                } else {
                    default.to_owned()
                },
            ))
        })
        .collect();
    let expected: String = code
        .iter()
        .map(|(k, d)| {
            format!(
                "| `{k}` | {} | {} | ... |\n",
                if d.is_empty() {
                    "—".into()
                } else {
                    format!("`{d}`")
                },
                environment::origin(k).as_str()
            )
        })
        .collect();
    assert_eq!(
        table, code,
        "the README's configuration table is out of step; its rows should be:\n{expected}"
    );
    for (name, said) in &whose {
        assert_eq!(
            said,
            environment::origin(name).as_str(),
            "README: whose variable {name} is"
        );
    }
}

#[test]
fn the_embedded_queue_must_give_pods_a_url_they_can_connect_to() {
    let err = parse(&["--listen", "0.0.0.0:3180"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("EXECUTOR_ADVERTISE_URL") && err.contains("0.0.0.0:3180"),
        "{err}"
    );
    let err = parse(&[
        "--listen",
        "0.0.0.0:3180",
        "--advertise-url",
        "http://0.0.0.0:3180",
    ])
    .unwrap_err()
    .to_string();
    assert!(err.contains("not a URL pods can connect to"), "{err}");
    let err = parse(&["--advertise-url", "executor-queue:3180"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"executor-queue:3180\""), "{err}");

    let config = parse(&[
        "--listen",
        "0.0.0.0:3180",
        "--advertise-url",
        "http://executor-queue:3180",
    ])
    .unwrap();
    assert_eq!(
        config.embedded.advertise_url.unwrap().as_str(),
        "http://executor-queue:3180/"
    );
    // With Sourcegraph's queue the embedded one does not run: nothing to advertise.
    parse(&[
        "--listen",
        "0.0.0.0:3180",
        "--frontend-url",
        "https://sg.example.com",
        "--frontend-password",
        "x",
        "--queue-name",
        "batches",
    ])
    .unwrap();
}

#[test]
fn durations_that_would_overflow_a_timer_or_busy_poll_are_refused_at_start() {
    let err = parse(&[
        "--max-active-time",
        "500000000000y",
        "--drain-timeout",
        "100000000d",
        "--queue-poll-interval",
        "0s",
    ])
    .unwrap_err()
    .to_string();
    for named in [
        "EXECUTOR_MAX_ACTIVE_TIME",
        "EXECUTOR_DRAIN_TIMEOUT",
        "EXECUTOR_QUEUE_POLL_INTERVAL",
    ] {
        assert!(err.contains(named), "{named}: {err}");
    }
    assert!(err.contains("out of range"), "{err}");
}

#[test]
fn the_step_image_is_read_by_the_seeds_name_and_by_the_earlier_one() {
    let k = |args: &[&str]| parse(args).unwrap().kubernetes.step_image;
    assert_eq!(k(&[]), "sourcegraph/batcheshelper:insiders");
    assert_eq!(
        k(&["--single-job-step-image", "registry.acme.com/helper:2"]),
        "registry.acme.com/helper:2"
    );
    assert_eq!(
        k(&["--job-step-image", "registry.acme.com/helper:1"]),
        "registry.acme.com/helper:1"
    );
}

#[test]
fn the_seeds_name_of_the_step_image_wins_and_the_other_is_warned_about() {
    let c = parse(&[
        "--single-job-step-image",
        "registry.acme.com/helper:2",
        "--job-step-image",
        "registry.acme.com/helper:1",
    ])
    .unwrap();
    assert_eq!(c.kubernetes.step_image, "registry.acme.com/helper:2");
    let warnings = c.warnings().join("\n");
    assert!(
        warnings.contains("KUBERNETES_JOB_STEP_IMAGE=\"registry.acme.com/helper:1\" is ignored: KUBERNETES_SINGLE_JOB_STEP_IMAGE=\"registry.acme.com/helper:2\" is set too"),
        "{warnings}"
    );
    // The same image under both names is no conflict.
    let same = parse(&["--single-job-step-image", "a:1", "--job-step-image", "a:1"]).unwrap();
    assert!(same.warnings().is_empty(), "{:?}", same.warnings());
}

#[test]
fn a_bad_step_image_is_named_under_the_variable_it_came_from() {
    let err = parse(&["--job-step-image", "my image"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("KUBERNETES_JOB_STEP_IMAGE: \"my image\" is not an image reference"),
        "{err}"
    );
}

#[test]
fn single_job_pod_false_is_warned_about_as_the_one_mode_this_executor_has() {
    assert!(
        parse(&["--single-job-pod", "true"])
            .unwrap()
            .warnings()
            .is_empty()
    );
    let warnings = parse(&["--single-job-pod", "false"])
        .unwrap()
        .warnings()
        .join("\n");
    assert!(
        warnings.contains(
            "KUBERNETES_SINGLE_JOB_POD=false is ignored: this executor runs each job as one pod"
        ) && warnings.contains("no shared volume"),
        "{warnings}"
    );
    let err = parse(&["--single-job-pod", "sometimes"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("KUBERNETES_SINGLE_JOB_POD: \"sometimes\" is not a boolean"),
        "{err}"
    );
}

#[test]
fn the_log_settings_are_checked_with_every_other_setting() {
    let err = parse(&["--log-level", "verbose", "--maximum-num-jobs", "0"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("EXECUTOR_MAXIMUM_NUM_JOBS") && err.contains("SRC_LOG_LEVEL: \"verbose\""),
        "{err}"
    );
    let c = parse(&["--log-format", "json", "--log-level", "dbug"]).unwrap();
    assert_eq!(c.logging.format, LogFormat::Json);
    assert_eq!(c.logging.level, Some(tracing::Level::DEBUG));
}
