//! The queue protocol as the executor speaks it: the wire types, the client and the log uploader; the embedded queue that serves it lives in `embedded`.

pub mod client;
pub mod upload;
pub mod wire;
