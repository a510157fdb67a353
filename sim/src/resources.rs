//! The resources the simulator serves: names, kinds, groups, scope, verbs and the fields they can be selected by.

/// One resource type.
#[derive(Debug)]
pub struct Resource {
    /// Plural name in paths (`jobs`).
    pub name: &'static str,
    /// Singular name for discovery (`job`).
    pub singular: &'static str,
    /// Kind (`Job`).
    pub kind: &'static str,
    /// API group ("" for core).
    pub group: &'static str,
    /// Version.
    pub version: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Subresources served (`status`, `log`).
    pub subresources: &'static [&'static str],
    /// Short names for `kubectl`.
    pub short_names: &'static [&'static str],
    /// Fields usable in a `fieldSelector`, besides `metadata.name` and `metadata.namespace`.
    pub fields: &'static [&'static str],
}

impl Resource {
    /// `batch/v1` or `v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Every field a selector may name.
    pub fn selectable_fields(&self) -> Vec<&'static str> {
        let mut fields = vec!["metadata.name", "metadata.namespace"];
        fields.extend_from_slice(self.fields);
        fields
    }
}

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// The verbs of every resource, for discovery.
pub fn verbs() -> &'static [&'static str] {
    VERBS
}

/// Every resource served.
pub static RESOURCES: &[Resource] = &[
    Resource {
        name: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        group: "",
        version: "v1",
        namespaced: false,
        subresources: &["status"],
        short_names: &["ns"],
        fields: &["status.phase"],
    },
    Resource {
        name: "nodes",
        singular: "node",
        kind: "Node",
        group: "",
        version: "v1",
        namespaced: false,
        subresources: &["status"],
        short_names: &["no"],
        fields: &["spec.unschedulable"],
    },
    Resource {
        name: "pods",
        singular: "pod",
        kind: "Pod",
        group: "",
        version: "v1",
        namespaced: true,
        subresources: &["status", "log"],
        short_names: &["po"],
        fields: &[
            "status.phase",
            "spec.nodeName",
            "spec.restartPolicy",
            "status.podIP",
        ],
    },
    Resource {
        name: "secrets",
        singular: "secret",
        kind: "Secret",
        group: "",
        version: "v1",
        namespaced: true,
        subresources: &[],
        short_names: &[],
        fields: &["type"],
    },
    Resource {
        name: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        group: "",
        version: "v1",
        namespaced: true,
        subresources: &[],
        short_names: &["cm"],
        fields: &[],
    },
    Resource {
        name: "persistentvolumeclaims",
        singular: "persistentvolumeclaim",
        kind: "PersistentVolumeClaim",
        group: "",
        version: "v1",
        namespaced: true,
        subresources: &["status"],
        short_names: &["pvc"],
        fields: &[],
    },
    Resource {
        name: "events",
        singular: "event",
        kind: "Event",
        group: "",
        version: "v1",
        namespaced: true,
        subresources: &[],
        short_names: &["ev"],
        fields: &[
            "involvedObject.kind",
            "involvedObject.name",
            "involvedObject.namespace",
            "involvedObject.uid",
            "reason",
            "type",
        ],
    },
    Resource {
        name: "jobs",
        singular: "job",
        kind: "Job",
        group: "batch",
        version: "v1",
        namespaced: true,
        subresources: &["status"],
        short_names: &[],
        fields: &["status.successful"],
    },
    // Identity and access (sim/src/auth).
    Resource {
        name: "serviceaccounts",
        singular: "serviceaccount",
        kind: "ServiceAccount",
        group: "",
        version: "v1",
        namespaced: true,
        subresources: &["token"],
        short_names: &["sa"],
        fields: &[],
    },
    rbac("roles", "role", "Role", true),
    rbac("clusterroles", "clusterrole", "ClusterRole", false),
    rbac("rolebindings", "rolebinding", "RoleBinding", true),
    rbac(
        "clusterrolebindings",
        "clusterrolebinding",
        "ClusterRoleBinding",
        false,
    ),
    Resource {
        name: "selfsubjectaccessreviews",
        singular: "selfsubjectaccessreview",
        kind: "SelfSubjectAccessReview",
        group: "authorization.k8s.io",
        version: "v1",
        namespaced: false,
        subresources: &[],
        short_names: &[],
        fields: &[],
    },
    Resource {
        name: "services",
        singular: "service",
        kind: "Service",
        group: "",
        version: "v1",
        namespaced: true,
        subresources: &["status"],
        short_names: &["svc"],
        fields: &[],
    },
    Resource {
        name: "deployments",
        singular: "deployment",
        kind: "Deployment",
        group: "apps",
        version: "v1",
        namespaced: true,
        subresources: &["status"],
        short_names: &["deploy"],
        fields: &[],
    },
    Resource {
        name: "replicasets",
        singular: "replicaset",
        kind: "ReplicaSet",
        group: "apps",
        version: "v1",
        namespaced: true,
        subresources: &["status"],
        short_names: &["rs"],
        fields: &[],
    },
    Resource {
        name: "networkpolicies",
        singular: "networkpolicy",
        kind: "NetworkPolicy",
        group: "networking.k8s.io",
        version: "v1",
        namespaced: true,
        subresources: &[],
        short_names: &["netpol"],
        fields: &[],
    },
    Resource {
        name: "poddisruptionbudgets",
        singular: "poddisruptionbudget",
        kind: "PodDisruptionBudget",
        group: "policy",
        version: "v1",
        namespaced: true,
        subresources: &["status"],
        short_names: &["pdb"],
        fields: &[],
    },
];

const fn rbac(
    name: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
) -> Resource {
    Resource {
        name,
        singular,
        kind,
        group: "rbac.authorization.k8s.io",
        version: "v1",
        namespaced,
        subresources: &[],
        short_names: &[],
        fields: &[],
    }
}

/// The verbs `resource` serves (reviews are only created).
pub fn verbs_of(resource: &Resource) -> &'static [&'static str] {
    match resource.kind {
        "SelfSubjectAccessReview" => &["create"],
        _ => VERBS,
    }
}

/// The resource served at `group`/`version` under `name`.
pub fn find(group: &str, version: &str, name: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.name == name)
}

/// The resource of `kind` (for owner references).
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind && r.api_version() == api_version)
}
