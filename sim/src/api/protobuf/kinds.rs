//! The field lists of the k8s-pb messages the simulator takes as protobuf (the kinds kubectl's imperative commands create, and the types inside them); a message or field not listed here is refused, never dropped.

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::authentication::v1 as authn;
use k8s_pb::api::authorization::v1 as authz;
use k8s_pb::api::batch::v1 as batch;
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::policy::v1 as policy;
use k8s_pb::api::rbac::v1 as rbac;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;

use super::convert::fields;

// apimachinery: metadata and selectors. Go's non-pointer integers (written
// on the wire even when zero, omitted from JSON then) are `OmitZero`.
fields! { meta::ObjectMeta {
    name, generate_name, namespace, self_link, uid, resource_version, generation: OmitZero,
    creation_timestamp, deletion_timestamp, deletion_grace_period_seconds, labels, annotations,
    owner_references, finalizers, managed_fields,
} }
fields! { meta::OwnerReference { api_version, kind, name, uid, controller, block_owner_deletion } }
fields! { meta::ManagedFieldsEntry {
    manager, operation, api_version, time, fields_type, fields_v1 => "fieldsV1", subresource,
} }
fields! { meta::LabelSelector { match_labels, match_expressions } }
fields! { meta::LabelSelectorRequirement { key, operator, values } }
fields! { meta::DeleteOptions {
    grace_period_seconds, preconditions, orphan_dependents, propagation_policy, dry_run,
    ignore_store_read_error_with_cluster_breaking_potential,
} }
fields! { meta::Preconditions { uid, resource_version } }

// core/v1: the small kinds.
fields! { core::Secret { metadata, immutable, data, string_data, r#type } }
fields! { core::ConfigMap { metadata, immutable, data, binary_data } }
fields! { core::Namespace { metadata, spec, status } }
fields! { core::NamespaceSpec { finalizers } }
fields! { core::NamespaceStatus { phase } }
fields! { core::ServiceAccount {
    metadata, secrets, image_pull_secrets, automount_service_account_token,
} }
fields! { core::ObjectReference {
    kind, namespace, name, uid, api_version, resource_version, field_path,
} }
fields! { core::LocalObjectReference { name } }

// rbac/v1.
fields! { rbac::Role { metadata, rules } }
fields! { rbac::ClusterRole { metadata, rules, aggregation_rule } }
fields! { rbac::AggregationRule { cluster_role_selectors } }
fields! { rbac::PolicyRule {
    verbs, api_groups, resources, resource_names, non_resource_ur_ls => "nonResourceURLs",
} }
fields! { rbac::RoleBinding { metadata, subjects, role_ref } }
fields! { rbac::ClusterRoleBinding { metadata, subjects, role_ref } }
fields! { rbac::RoleRef { api_group, kind, name } }
fields! { rbac::Subject { kind, api_group, name, namespace } }

// core/v1: Service.
fields! { core::Service { metadata, spec, status } }
fields! { core::ServiceSpec {
    ports, selector, cluster_ip => "clusterIP", cluster_ips => "clusterIPs", r#type, external_ips =>
    "externalIPs", session_affinity, load_balancer_ip => "loadBalancerIP",
    load_balancer_source_ranges, external_name, external_traffic_policy, health_check_node_port:
    OmitZero, publish_not_ready_addresses: OmitZero, session_affinity_config, ip_families,
    ip_family_policy, allocate_load_balancer_node_ports, load_balancer_class,
    internal_traffic_policy, traffic_distribution,
} }
fields! { core::ServicePort {
    name, protocol, app_protocol, port, target_port, node_port: OmitZero,
} }
fields! { core::SessionAffinityConfig { client_ip => "clientIP" } }
fields! { core::ClientIpConfig { timeout_seconds } }
fields! { core::ServiceStatus { load_balancer } }
fields! { core::LoadBalancerStatus {} }

// core/v1: Pod and its template.
fields! { core::Pod { metadata, spec, status } }
fields! { core::PodStatus {
    observed_generation: OmitZero, phase, message, reason, nominated_node_name, host_ip => "hostIP",
    pod_ip => "podIP", qos_class => "qosClass", resize,
} }
fields! { core::PodTemplateSpec { metadata, spec } }
fields! { core::PodSpec {
    volumes, init_containers, containers, restart_policy, termination_grace_period_seconds,
    active_deadline_seconds, dns_policy, node_selector, service_account_name, service_account,
    automount_service_account_token, node_name, host_network: OmitZero, host_pid => "hostPID":
    OmitZero, host_ipc => "hostIPC": OmitZero, share_process_namespace, security_context,
    image_pull_secrets, hostname, subdomain, affinity, scheduler_name, tolerations, host_aliases,
    priority_class_name, priority, dns_config, readiness_gates, runtime_class_name,
    enable_service_links, preemption_policy, overhead, set_hostname_as_fqdn => "setHostnameAsFQDN",
    os, host_users, scheduling_gates,
} }
fields! { core::Container {
    name, image, command, args, working_dir, ports, env_from, env, resources, resize_policy,
    restart_policy, volume_mounts, liveness_probe, readiness_probe, startup_probe, lifecycle,
    termination_message_path, termination_message_policy, image_pull_policy, security_context,
    stdin: OmitZero, stdin_once: OmitZero, tty: OmitZero,
} }
fields! { core::ContainerPort {
    name, host_port: OmitZero, container_port, protocol, host_ip => "hostIP",
} }
fields! { core::EnvVar { name, value, value_from } }
fields! { core::EnvVarSource { field_ref, resource_field_ref, config_map_key_ref, secret_key_ref } }
fields! { core::ObjectFieldSelector { api_version, field_path } }
fields! { core::ResourceFieldSelector { container_name, resource, divisor } }
fields! { core::ConfigMapKeySelector { local_object_reference: Inline, key, optional } }
fields! { core::SecretKeySelector { local_object_reference: Inline, key, optional } }
fields! { core::EnvFromSource { prefix, config_map_ref, secret_ref } }
fields! { core::ConfigMapEnvSource { local_object_reference: Inline, optional } }
fields! { core::SecretEnvSource { local_object_reference: Inline, optional } }
fields! { core::ResourceRequirements { limits, requests, claims } }
fields! { core::ResourceClaim { name, request } }
fields! { core::ContainerResizePolicy { resource_name, restart_policy } }
fields! { core::VolumeMount {
    name, read_only: OmitZero, recursive_read_only, mount_path, sub_path, mount_propagation,
    sub_path_expr,
} }
fields! { core::Probe {
    handler: Inline, initial_delay_seconds: OmitZero, timeout_seconds: OmitZero, period_seconds:
    OmitZero, success_threshold: OmitZero, failure_threshold: OmitZero,
    termination_grace_period_seconds,
} }
fields! { core::ProbeHandler { exec, http_get, tcp_socket, grpc } }
fields! { core::Lifecycle { post_start, pre_stop, stop_signal } }
fields! { core::LifecycleHandler { exec, http_get, tcp_socket, sleep } }
fields! { core::ExecAction { command } }
fields! { core::HttpGetAction { path, port, host, scheme, http_headers } }
fields! { core::HttpHeader { name, value } }
fields! { core::TcpSocketAction { port, host } }
fields! { core::GrpcAction { port, service } }
fields! { core::SleepAction { seconds } }
fields! { core::SecurityContext {
    capabilities, privileged, se_linux_options, run_as_user, run_as_group, run_as_non_root,
    read_only_root_filesystem, allow_privilege_escalation, proc_mount, seccomp_profile,
    app_armor_profile,
} }
fields! { core::PodSecurityContext {
    se_linux_options, run_as_user, run_as_group, run_as_non_root, supplemental_groups,
    supplemental_groups_policy, fs_group, sysctls, fs_group_change_policy, seccomp_profile,
    app_armor_profile, se_linux_change_policy,
} }
fields! { core::Capabilities { add, drop } }
fields! { core::SeLinuxOptions { user, role, r#type, level } }
fields! { core::SeccompProfile { r#type, localhost_profile } }
fields! { core::AppArmorProfile { r#type, localhost_profile } }
fields! { core::Sysctl { name, value } }
fields! { core::Toleration { key, operator, value, effect, toleration_seconds } }
fields! { core::HostAlias { ip, hostnames } }
fields! { core::PodDnsConfig { nameservers, searches, options } }
fields! { core::PodDnsConfigOption { name, value } }
fields! { core::PodReadinessGate { condition_type } }
fields! { core::PodSchedulingGate { name } }
fields! { core::PodOs { name } }
fields! { core::Affinity { node_affinity, pod_affinity, pod_anti_affinity } }
fields! { core::NodeAffinity {
    required_during_scheduling_ignored_during_execution,
    preferred_during_scheduling_ignored_during_execution,
} }
fields! { core::NodeSelector { node_selector_terms } }
fields! { core::NodeSelectorTerm { match_expressions, match_fields } }
fields! { core::NodeSelectorRequirement { key, operator, values } }
fields! { core::PreferredSchedulingTerm { weight, preference } }
fields! { core::PodAffinity {
    required_during_scheduling_ignored_during_execution,
    preferred_during_scheduling_ignored_during_execution,
} }
fields! { core::PodAntiAffinity {
    required_during_scheduling_ignored_during_execution,
    preferred_during_scheduling_ignored_during_execution,
} }
fields! { core::PodAffinityTerm {
    label_selector, namespaces, topology_key, namespace_selector, match_label_keys,
    mismatch_label_keys,
} }
fields! { core::WeightedPodAffinityTerm { weight, pod_affinity_term } }
fields! { core::Volume { name, volume_source: Inline } }
fields! { core::VolumeSource {
    host_path, empty_dir, secret, persistent_volume_claim, downward_api => "downwardAPI",
    config_map, projected,
} }
fields! { core::HostPathVolumeSource { path, r#type } }
fields! { core::EmptyDirVolumeSource { medium, size_limit } }
fields! { core::SecretVolumeSource { secret_name, items, default_mode, optional } }
fields! { core::ConfigMapVolumeSource {
    local_object_reference: Inline, items, default_mode, optional,
} }
fields! { core::KeyToPath { key, path, mode } }
fields! { core::PersistentVolumeClaimVolumeSource { claim_name, read_only: OmitZero } }
fields! { core::DownwardAPIVolumeSource { items, default_mode } }
fields! { core::DownwardAPIVolumeFile { path, field_ref, resource_field_ref, mode } }
fields! { core::ProjectedVolumeSource { sources, default_mode } }
fields! { core::VolumeProjection {
    secret, downward_api => "downwardAPI", config_map, service_account_token,
} }
fields! { core::SecretProjection { local_object_reference: Inline, items, optional } }
fields! { core::ConfigMapProjection { local_object_reference: Inline, items, optional } }
fields! { core::DownwardAPIProjection { items } }
fields! { core::ServiceAccountTokenProjection { audience, expiration_seconds, path } }

// batch/v1: Job.
fields! { batch::Job { metadata, spec, status } }
fields! { batch::JobSpec {
    parallelism, completions, active_deadline_seconds, pod_failure_policy, success_policy,
    backoff_limit, backoff_limit_per_index, max_failed_indexes, selector, manual_selector, template,
    ttl_seconds_after_finished, completion_mode, suspend, pod_replacement_policy, managed_by,
} }
fields! { batch::JobStatus {
    start_time, completion_time, active: OmitZero, succeeded: OmitZero, failed: OmitZero,
    terminating, completed_indexes, failed_indexes, ready,
} }
fields! { batch::PodFailurePolicy { rules } }
fields! { batch::PodFailurePolicyRule { action, on_exit_codes, on_pod_conditions } }
fields! { batch::PodFailurePolicyOnExitCodesRequirement { container_name, operator, values } }
fields! { batch::PodFailurePolicyOnPodConditionsPattern { r#type, status } }
fields! { batch::SuccessPolicy { rules } }
fields! { batch::SuccessPolicyRule { succeeded_indexes, succeeded_count } }

// apps/v1: Deployment.
fields! { apps::Deployment { metadata, spec, status } }
fields! { apps::DeploymentSpec {
    replicas, selector, template, strategy, min_ready_seconds: OmitZero, revision_history_limit,
    paused: OmitZero, progress_deadline_seconds,
} }
fields! { apps::DeploymentStrategy { r#type, rolling_update } }
fields! { apps::RollingUpdateDeployment { max_unavailable, max_surge } }
fields! { apps::DeploymentStatus {
    observed_generation: OmitZero, replicas: OmitZero, updated_replicas: OmitZero, ready_replicas:
    OmitZero, available_replicas: OmitZero, unavailable_replicas: OmitZero, terminating_replicas,
    collision_count,
} }

// policy/v1: PodDisruptionBudget (`kubectl create poddisruptionbudget`). The
// status counts have no `omitempty` in Go: their zeros are written.
fields! { policy::PodDisruptionBudget { metadata, spec, status } }
fields! { policy::PodDisruptionBudgetSpec {
    min_available, selector, max_unavailable, unhealthy_pod_eviction_policy,
} }
fields! { policy::PodDisruptionBudgetStatus {
    observed_generation: OmitZero, disrupted_pods, disruptions_allowed, current_healthy,
    desired_healthy, expected_pods,
} }

// The access requests kubectl sends (`auth can-i`, `create token`).
fields! { authz::SelfSubjectAccessReview { metadata, spec, status } }
fields! { authz::SelfSubjectAccessReviewSpec { resource_attributes, non_resource_attributes } }
fields! { authz::ResourceAttributes {
    namespace, verb, group, version, resource, subresource, name, field_selector, label_selector,
} }
fields! { authz::FieldSelectorAttributes { raw_selector, requirements } }
fields! { authz::LabelSelectorAttributes { raw_selector, requirements } }
fields! { meta::FieldSelectorRequirement { key, operator, values } }
fields! { authz::NonResourceAttributes { path, verb } }
fields! { authz::SubjectAccessReviewStatus {
    allowed: OmitZero, denied: OmitZero, reason, evaluation_error,
} }
fields! { authn::TokenRequest { metadata, spec, status } }
fields! { authn::TokenRequestSpec { audiences, expiration_seconds, bound_object_ref } }
fields! { authn::BoundObjectReference { kind, api_version, name, u_id => "uid" } }
fields! { authn::TokenRequestStatus { token, expiration_timestamp } }
