//! Every container of a Job's pod, init and regular, each with its role: one of the job's steps or one of the executor's own containers.
//!
//! The executor runs a job in one pod: the init container `setup-workspace`
//! clones the repository and writes the workspace files, one init container
//! `step-<i>` per step runs that step, and the container `main` only marks
//! success. A policy on what users run looks at [`Role::Step`]s; a policy on
//! what the pod asks of the cluster (resources, images) looks at all of them.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, PodSpec};

/// The executor's init container that prepares the workspace.
pub const SETUP_WORKSPACE: &str = "setup-workspace";
/// The executor's container that only marks success, after every step.
pub const MAIN: &str = "main";
/// The name of step `i`'s init container is this prefix and `i`.
pub const STEP_PREFIX: &str = "step-";

/// What a container is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// `setup-workspace`, the executor's init container that clones and writes files.
    Setup,
    /// The job's step with this index (init container `step-<i>`), in order.
    Step(usize),
    /// `main`, the executor's container that only marks success.
    Main,
    /// Any other container: not one the executor renders (another plugin's
    /// sidecar, or a Job from elsewhere).
    Other,
}

impl Role {
    /// The role of a container named `name`, an init container when `init`.
    pub fn of(name: &str, init: bool) -> Role {
        match (init, name) {
            (true, SETUP_WORKSPACE) => Role::Setup,
            (false, MAIN) => Role::Main,
            (true, _) => name
                .strip_prefix(STEP_PREFIX)
                .filter(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|i| i.parse().ok())
                .map_or(Role::Other, Role::Step),
            (false, _) => Role::Other,
        }
    }

    /// Whether this is one of the job's steps (what its user runs).
    pub fn is_step(self) -> bool {
        matches!(self, Role::Step(_))
    }

    /// Whether this is one of the executor's own containers (`setup-workspace`, `main`).
    pub fn is_executors(self) -> bool {
        matches!(self, Role::Setup | Role::Main)
    }
}

/// A container of the pod, with its role.
#[derive(Debug, Clone, Copy)]
pub struct PodContainer<'a> {
    /// The container.
    pub container: &'a Container,
    /// What it is for.
    pub role: Role,
    /// Whether it is an init container (runs before the others, in order).
    pub init: bool,
}

/// A container of the pod, to change, with its role.
#[derive(Debug)]
pub struct PodContainerMut<'a> {
    /// The container.
    pub container: &'a mut Container,
    /// What it is for.
    pub role: Role,
    /// Whether it is an init container.
    pub init: bool,
}

/// The pod's spec, if the Job has one.
pub fn pod_spec(job: &Job) -> Option<&PodSpec> {
    job.spec.as_ref()?.template.spec.as_ref()
}

/// The pod's spec, created empty when absent.
pub fn pod_spec_mut(job: &mut Job) -> &mut PodSpec {
    job.spec
        .get_or_insert_default()
        .template
        .spec
        .get_or_insert_default()
}

/// Every container of the pod in the order they run: init containers, then
/// the others.
pub fn all(job: &Job) -> impl Iterator<Item = PodContainer<'_>> {
    let spec = pod_spec(job);
    let init = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or(&[]);
    let regular = spec.map_or(&[][..], |s| s.containers.as_slice());
    fn tag(init: bool) -> impl Fn(&Container) -> PodContainer<'_> {
        move |c| PodContainer {
            role: Role::of(&c.name, init),
            container: c,
            init,
        }
    }
    init.iter()
        .map(tag(true))
        .chain(regular.iter().map(tag(false)))
}

/// [`all`], to change them.
pub fn all_mut(job: &mut Job) -> impl Iterator<Item = PodContainerMut<'_>> {
    let (init, regular) = match job.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        Some(spec) => (
            spec.init_containers.as_deref_mut().unwrap_or(&mut []),
            spec.containers.as_mut_slice(),
        ),
        None => (&mut [][..], &mut [][..]),
    };
    fn tag(init: bool) -> impl Fn(&mut Container) -> PodContainerMut<'_> {
        move |c| PodContainerMut {
            role: Role::of(&c.name, init),
            container: c,
            init,
        }
    }
    init.iter_mut()
        .map(tag(true))
        .chain(regular.iter_mut().map(tag(false)))
}

/// The job's steps in order, with their indices.
pub fn steps(job: &Job) -> impl Iterator<Item = (usize, &Container)> {
    all(job).filter_map(|c| match c.role {
        Role::Step(i) => Some((i, c.container)),
        _ => None,
    })
}

/// [`steps`], to change them (the executor restores their image, command,
/// arguments and working directory after admission).
pub fn steps_mut(job: &mut Job) -> impl Iterator<Item = (usize, &mut Container)> {
    all_mut(job).filter_map(|c| match c.role {
        Role::Step(i) => Some((i, c.container)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::jobs;

    #[test]
    fn steps_are_the_numbered_init_containers_and_the_rest_are_the_executors() {
        assert_eq!(Role::of("setup-workspace", true), Role::Setup);
        assert_eq!(Role::of("step-12", true), Role::Step(12));
        assert_eq!(Role::of("main", false), Role::Main);
        // Only the executor's own layout counts: a `main` init container or
        // a `step-x` is someone else's.
        for (name, init) in [
            ("main", true),
            ("step-", true),
            ("step-x", true),
            ("step-0", false),
        ] {
            assert_eq!(Role::of(name, init), Role::Other, "{name} init={init}");
        }
    }

    #[test]
    fn all_walks_init_containers_then_the_others_and_all_mut_changes_them() {
        let mut job = jobs::steps();
        let names: Vec<(&str, bool)> = all(&job)
            .map(|c| (c.container.name.as_str(), c.init))
            .collect();
        assert_eq!(
            names,
            [
                ("setup-workspace", true),
                ("step-0", true),
                ("step-1", true),
                ("step-2", true),
                ("main", false),
            ]
        );
        for c in all_mut(&mut job).filter(|c| c.role.is_step()) {
            c.container.image_pull_policy = Some("Always".into());
        }
        let pulled: Vec<usize> = steps(&job)
            .filter(|(_, c)| c.image_pull_policy.as_deref() == Some("Always"))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(pulled, [0, 1, 2]);
        assert!(
            all(&job)
                .filter(|c| c.role.is_executors())
                .all(|c| c.container.image_pull_policy.is_none())
        );
    }

    #[test]
    fn a_job_without_a_pod_has_no_containers() {
        let mut job = Job::default();
        assert_eq!(all(&job).count(), 0);
        assert_eq!(all_mut(&mut job).count(), 0);
        pod_spec_mut(&mut job).node_name = Some("n".into());
        assert_eq!(
            pod_spec(&job).and_then(|s| s.node_name.as_deref()),
            Some("n")
        );
    }
}
