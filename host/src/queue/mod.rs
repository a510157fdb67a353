//! The queue side of the executor: the protocol's wire types and payload, the client, the log uploader and the embedded queue.

pub mod client;
pub mod embedded;
pub mod payload;
pub mod upload;
pub mod wire;
