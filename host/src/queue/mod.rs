//! The queue side of the executor: the protocol's wire types, the client, the log uploader and the embedded queue.

pub mod client;
pub mod embedded;
pub mod upload;
pub mod wire;
