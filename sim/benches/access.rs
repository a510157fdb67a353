//! `cargo bench -p sim --bench access [-- N]`: what TLS and authentication/authorization cost per request. N sequential GETs (default 2000) of one ConfigMap through the kube client (kept-alive connections) over plain HTTP and HTTPS, as the admin (`system:masters`: no RBAC walk) and as a ServiceAccount (token lookup plus an RBAC walk to a RoleBinding); prints p50/p90 side by side, and the in-process cost of authenticating and authorizing one request.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;

const NS: &str = "default";

async fn setup(sim: &sim::Sim) -> anyhow::Result<String> {
    let admin = Client::try_from(sim.kube_config().await?)?;
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), NS);
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "bench"}, "data": {"k": "v"}}))?,
    )
    .await?;
    let objects = [
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "reader"},
               "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "reader"},
               "subjects": [{"kind": "ServiceAccount", "name": "reader"}],
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"}}),
    ];
    for o in objects {
        let kind = o["kind"].as_str().unwrap_or_default();
        let path = match kind {
            "ServiceAccount" => format!("/api/v1/namespaces/{NS}/serviceaccounts"),
            "Role" => format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/roles"),
            _ => format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/rolebindings"),
        };
        let req = http::Request::post(path)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&o)?)?;
        admin.request_text(req).await?;
    }
    let req = http::Request::post(format!(
        "/api/v1/namespaces/{NS}/serviceaccounts/reader/token"
    ))
    .header("content-type", "application/json")
    .body(br#"{"spec":{}}"#.to_vec())?;
    let answer: serde_json::Value = serde_json::from_str(&admin.request_text(req).await?)?;
    Ok(answer["status"]["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// p50 and p90 of `n` sequential GETs with `config` (after a warm-up).
async fn measure(config: kube::Config, n: usize) -> anyhow::Result<(Duration, Duration)> {
    let cms: Api<ConfigMap> = Api::namespaced(Client::try_from(config)?, NS);
    for _ in 0..50 {
        cms.get("bench").await?;
    }
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        cms.get("bench").await?;
        times.push(t.elapsed());
    }
    times.sort();
    Ok((times[n / 2], times[n * 9 / 10]))
}

async fn config_for(sim: &sim::Sim, token: Option<&str>) -> anyhow::Result<kube::Config> {
    let yaml = match token {
        Some(t) => sim.kubeconfig_with_token("reader", t),
        None => sim.kubeconfig(),
    };
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&yaml)?;
    Ok(kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2000);
    let mut rows = Vec::new();
    for insecure in [true, false] {
        let options = sim::Options {
            insecure_http: insecure,
            ..sim::Options::default()
        };
        let sim = sim::Sim::start("127.0.0.1:0".parse()?, options).await?;
        let token = setup(&sim).await?;
        let transport = if insecure { "HTTP " } else { "HTTPS" };
        let admin = measure(config_for(&sim, None).await?, n).await?;
        rows.push((transport, "admin (system:masters)", admin));
        let account = measure(config_for(&sim, Some(&token)).await?, n).await?;
        rows.push((transport, "ServiceAccount + RBAC", account));
        if !insecure {
            in_process(&sim, &token);
        }
    }
    println!("GET one ConfigMap, {n} sequential requests each, kept-alive connection:");
    println!("{:<6} {:<24} {:>10} {:>10}", "", "identity", "p50", "p90");
    for (transport, who, (p50, p90)) in rows {
        println!(
            "{transport:<6} {who:<24} {:>8.0}µs {:>8.0}µs",
            p50.as_secs_f64() * 1e6,
            p90.as_secs_f64() * 1e6
        );
    }
    Ok(())
}

/// Authenticating a ServiceAccount token and walking RBAC to its
/// RoleBinding, without the network: the per-request cost of the checks.
fn in_process(sim: &sim::Sim, token: &str) {
    let attrs = sim::auth::attributes::Attributes::of_request(
        "GET",
        &format!("/api/v1/namespaces/{NS}/configmaps/bench"),
        "",
    );
    let rounds = 100_000u32;
    let t = Instant::now();
    for _ in 0..rounds {
        let user = sim
            .cluster
            .auth
            .authenticate(&sim.cluster.store, token)
            .unwrap_or_else(sim::auth::User::anonymous);
        std::hint::black_box(sim::auth::rbac::authorize(
            &sim.cluster.store,
            &user,
            &attrs,
        ));
    }
    println!(
        "in process: authenticate + authorize a ServiceAccount request: {:.2}µs each ({rounds} rounds)",
        t.elapsed().as_secs_f64() * 1e6 / f64::from(rounds)
    );
}
