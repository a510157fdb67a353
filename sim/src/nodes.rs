//! The nodes the simulator has: the Node object it makes for a name and size, and the `--nodes` file that lists them; no cluster state.

use serde_json::{Value, json};

/// A schedulable node with `cpu` and `memory` allocatable and 110 pods.
pub fn node(name: &str, cpu: &str, memory: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
        }},
        "spec": {},
        "status": {
            "capacity": {"cpu": cpu, "memory": memory, "pods": "110"},
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status"}],
        },
    })
}

/// The simulator's nodes when none are given: three of 4 CPUs and 16 GiB.
pub fn default_nodes() -> Vec<Value> {
    (1..=3)
        .map(|i| node(&format!("sim-node-{i}"), "4", "16Gi"))
        .collect()
}

/// The `--nodes` file: the cluster's nodes.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodesFile {
    /// The nodes; absent: the simulator's three default nodes (so a file
    /// may map images alone).
    #[serde(default)]
    pub nodes: Option<Vec<NodeSpec>>,
    /// Images whose pulls fail.
    #[serde(default)]
    pub missing_images: Vec<String>,
    /// Local programs that stand in for images (see `crate::images`).
    #[serde(default)]
    pub images: Vec<crate::images::ImageMapping>,
}

/// One node of the `--nodes` file.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSpec {
    /// Its name.
    pub name: String,
    /// Labels besides the standard hostname/os/arch ones.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Taints (`{key, value?, effect}`).
    #[serde(default)]
    pub taints: Vec<Value>,
    /// Allocatable CPU (default 4).
    #[serde(default = "default_cpu")]
    pub cpu: String,
    /// Allocatable memory (default 16Gi).
    #[serde(default = "default_memory")]
    pub memory: String,
}

fn default_cpu() -> String {
    "4".into()
}

fn default_memory() -> String {
    "16Gi".into()
}

impl NodesFile {
    /// Reads and checks the YAML of a `--nodes` file.
    pub fn load(text: &str) -> Result<NodesFile, String> {
        let file: NodesFile = serde_norway::from_str(text).map_err(|e| e.to_string())?;
        if file.nodes.as_ref().is_some_and(Vec::is_empty) {
            return Err("no nodes; expected at least one under `nodes:` (or no `nodes:` for the default three)".into());
        }
        crate::images::validate(&file.images).map_err(|e| e.to_string())?;
        Ok(file)
    }

    /// The Node objects the file describes.
    pub fn node_objects(&self) -> Vec<Value> {
        let Some(nodes) = &self.nodes else {
            return default_nodes();
        };
        nodes
            .iter()
            .map(|n| {
                let mut object = node(&n.name, &n.cpu, &n.memory);
                for (k, v) in &n.labels {
                    object["metadata"]["labels"][k] = json!(v);
                }
                if !n.taints.is_empty() {
                    object["spec"]["taints"] = json!(n.taints);
                }
                object
            })
            .collect()
    }

    /// Parses the YAML of a `--nodes` file into Node objects and the
    /// images whose pulls fail.
    pub fn parse(text: &str) -> Result<(Vec<Value>, Vec<String>), String> {
        let file = NodesFile::load(text)?;
        Ok((file.node_objects(), file.missing_images))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nodes_file_gives_nodes_with_their_labels_taints_and_sizes() {
        let (nodes, missing) = NodesFile::parse(
            "missingImages: [registry.example.com/gone:1]\nnodes:\n- name: big\n  cpu: '32'\n  memory: 128Gi\n  labels: {pool: ci}\n  taints: [{key: dedicated, value: ci, effect: NoSchedule}]\n- name: small\n",
        )
        .unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0]["metadata"]["labels"]["pool"], "ci");
        assert_eq!(
            nodes[0]["metadata"]["labels"]["kubernetes.io/hostname"],
            "big"
        );
        assert_eq!(nodes[0]["status"]["allocatable"]["cpu"], "32");
        assert_eq!(nodes[0]["spec"]["taints"][0]["key"], "dedicated");
        assert_eq!(nodes[1]["status"]["allocatable"]["memory"], "16Gi");
        assert_eq!(missing, ["registry.example.com/gone:1"]);
    }

    #[test]
    fn a_nodes_file_maps_images_to_local_programs() {
        let file = NodesFile::load(
            "nodes: [{name: a}]\nimages:\n- {image: 'sourcegraph/executor:*', command: /opt/executor/bin/executor}\n",
        )
        .unwrap();
        assert_eq!(file.images[0].image, "sourcegraph/executor:*");
        assert_eq!(
            file.images[0].command,
            std::path::Path::new("/opt/executor/bin/executor")
        );
        let err = NodesFile::load("nodes: [{name: a}]\nimages: [{image: x, command: bin/x}]\n")
            .unwrap_err();
        assert!(err.contains("is not an absolute path"), "{err}");
        // A file that only maps images keeps the default nodes (as the
        // README's deploy steps write it).
        let file =
            NodesFile::load("images:\n- {image: 'executor:*', command: /bin/true}\n").unwrap();
        assert_eq!(file.node_objects().len(), 3);
        let err = NodesFile::load("nodes: []\n").unwrap_err();
        assert!(err.contains("no nodes"), "{err}");
    }

    #[test]
    fn a_bad_nodes_file_says_what_is_wrong() {
        let err = NodesFile::parse("nodes:\n- name: a\n  gpus: 2\n").unwrap_err();
        assert!(err.contains("unknown field `gpus`"), "{err}");
        let err = NodesFile::parse("nodes: []\n").unwrap_err();
        assert!(err.contains("no nodes"), "{err}");
    }
}
