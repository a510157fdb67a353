//! The simulator's integration tests, as one binary: each module is one area of the API (access, workloads, kubectl, ...); one binary builds and links once.

mod common;

mod access;
mod api;
mod clients;
mod imperative;
mod kubectl;
mod lifecycle;
mod sandbox;
mod workloads;
