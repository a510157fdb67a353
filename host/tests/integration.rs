//! The executor's integration tests, as one binary: each module is one area (cli, serve, deploy, ...), and one link and one process instead of twenty make the suite faster to build and to run.

mod common;

mod cli;
mod create;
mod deploy;
mod deploy_manifests;
mod embedded_queue;
mod image;
mod in_cluster;
mod instances;
mod operator_config;
mod ops;
mod queue_client;
mod reload;
mod render;
mod runtime;
mod scaffold;
mod sdk_samples;
mod serve;
mod serve_cli;
mod signed_plugins;
mod sim_run;
mod tour;
