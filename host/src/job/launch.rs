//! The second stage: subscribe to the job's pod, then create its objects; a create that fails takes back whatever it made.

use std::time::Instant;

use crate::k8s::create::{self, CreateError};
use crate::k8s::spec::JobObjects;
use crate::k8s::teardown::{Teardown, TeardownError};
use crate::k8s::watch::{PodWatcher, Subscription};

use super::follow::Cluster;

/// A job whose objects exist.
pub struct Launched {
    /// The job's pod, as the shared watcher sees it.
    pub pod: Subscription,
    /// When the create request went out.
    pub created: Instant,
}

/// Why a job's objects could not be created.
#[derive(Debug)]
pub struct LaunchError {
    /// What the API server said.
    pub error: CreateError,
    /// Whether what was made could be deleted again.
    pub teardown: Result<(), TeardownError>,
    /// When the create request went out.
    pub created: Instant,
}

/// Subscribes to the pod of Job `name` (before it exists, so no change is
/// missed), then creates `objects`.
pub async fn launch(
    name: &str,
    objects: &JobObjects,
    cluster: &Cluster,
    watcher: &PodWatcher,
    teardown: &Teardown,
) -> Result<Launched, LaunchError> {
    let pod = watcher.subscribe(name);
    tracing::info!(job = %name, "creating");
    let created = Instant::now();
    match create::create(&cluster.client, &cluster.namespace, objects).await {
        Ok(_) => Ok(Launched { pod, created }),
        Err(error) => {
            tracing::error!(job = %name, error = %error, "cannot create the job's objects");
            Err(LaunchError {
                error,
                teardown: teardown.all(objects).await,
                created,
            })
        }
    }
}
