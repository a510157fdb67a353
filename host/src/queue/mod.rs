//! The queue side of the executor: the job payload the queue protocol delivers (client and embedded queue come later).

pub mod payload;
