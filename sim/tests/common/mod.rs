//! The real kubectl against a simulator of the test's own, as an operator drives it: the kubeconfig the simulator writes, files to apply, JSON to read back; shared by the test files that use kubectl.

// Each test file uses its own part of the harness.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::Client;
use serde_json::Value;
use sim::{Options, Sim};

/// A simulator, a scratch directory, and the admin's kubeconfig in it.
pub struct Kubectl {
    /// The simulator.
    pub sim: Sim,
    /// Files the test writes (manifests, kubeconfigs).
    pub dir: tempfile::TempDir,
    /// The kubeconfig `Sim::write_kubeconfig` writes (admin, TLS).
    pub kubeconfig: PathBuf,
}

impl Kubectl {
    /// A simulator with the default options.
    pub async fn start() -> Kubectl {
        Kubectl::with(Options::default()).await
    }

    /// A simulator with `options`.
    pub async fn with(options: Options) -> Kubectl {
        let sim = Sim::start("127.0.0.1:0".parse().unwrap(), options)
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        sim.write_kubeconfig(&kubeconfig).unwrap();
        Kubectl {
            sim,
            dir,
            kubeconfig,
        }
    }

    /// A `kube` client as the admin.
    pub async fn client(&self) -> Client {
        Client::try_from(self.sim.kube_config().await.unwrap()).unwrap()
    }

    /// kubectl with `kubeconfig`: (success, stdout, stderr).
    pub async fn run_as(&self, kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
        let out = tokio::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .output()
            .await
            .unwrap_or_else(|e| panic!("cannot run kubectl (scripts/test installs it): {e}"));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// kubectl as the admin: (success, stdout, stderr).
    pub async fn run(&self, args: &[&str]) -> (bool, String, String) {
        self.run_as(&self.kubeconfig, args).await
    }

    /// kubectl as the admin, which must succeed; its stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args).await;
        assert!(ok, "kubectl {args:?} failed: {err}");
        out
    }

    /// `kubectl ... -o json`, parsed.
    pub async fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all).await).unwrap()
    }

    /// Writes `yaml` to `name` in the scratch directory; its path.
    pub fn write(&self, name: &str, yaml: &str) -> String {
        let file = self.dir.path().join(name);
        std::fs::write(&file, yaml).unwrap();
        file.to_string_lossy().into_owned()
    }

    /// `kubectl apply -f` of `yaml`.
    pub async fn apply(&self, yaml: &str) -> String {
        let file = self.write(&format!("{}.yaml", uuid::Uuid::new_v4()), yaml);
        self.ok(&["apply", "-f", &file]).await
    }

    /// `kubectl create -f` of `yaml` (no last-applied annotation on the object).
    pub async fn create(&self, yaml: &str) -> String {
        let file = self.write(&format!("{}.yaml", uuid::Uuid::new_v4()), yaml);
        self.ok(&["create", "-f", &file]).await
    }

    /// A kubeconfig holding a fresh token of ServiceAccount `ns/name`
    /// (`kubectl create token`).
    pub async fn as_account(&self, ns: &str, name: &str) -> PathBuf {
        let token = self.ok(&["create", "token", name, "-n", ns]).await;
        let path = self.dir.path().join(format!("{ns}-{name}.kubeconfig"));
        let user = format!("system:serviceaccount:{ns}:{name}");
        std::fs::write(&path, self.sim.kubeconfig_with_token(&user, token.trim())).unwrap();
        path
    }

    /// Polls `kubectl get -o json` until `done` holds, for at most 30 s.
    pub async fn until(&self, args: &[&str], done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.json(args).await;
            if done(&v) {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting on {args:?}: {v:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
