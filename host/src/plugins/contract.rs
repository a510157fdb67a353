//! One handle per export of a plugin that hides which version of the contract it was built against: every version's filter answer applied to the batch, and every version's admission answer in the current form.

use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre};

pub use super::bindings::Contract;
use super::bindings::executor::plugin::host::{
    self as host, JobContext, LogContext, LogEdit, LogRecord,
};
use super::bindings::exports::executor::plugin as now;
pub(crate) use super::bindings::exports::executor::plugin::admission::{Decision, Response};
use super::bindings::v0_1::exports::executor::plugin as v0_1;
use super::bindings::v0_2::exports::executor::plugin as v0_2;
use super::bindings::v0_3::exports::executor::plugin as v0_3;
use super::host::HostState;

/// Declares an export's handle: the export indices of each version, found
/// once per plugin, and the guest they load from each new instance.
macro_rules! export_handle {
    ($indices:ident, $guest:ident, $module:ident) => {
        /// The export's indices in a plugin of some version.
        #[derive(Clone)]
        pub(crate) enum $indices {
            V0_1(v0_1::$module::GuestIndices),
            V0_2(v0_2::$module::GuestIndices),
            V0_3(v0_3::$module::GuestIndices),
            V0_4(now::$module::GuestIndices),
        }

        /// The export, loaded from one instance.
        pub(crate) enum $guest {
            V0_1(v0_1::$module::Guest),
            V0_2(v0_2::$module::Guest),
            V0_3(v0_3::$module::Guest),
            V0_4(now::$module::Guest),
        }

        impl $indices {
            /// Finds the export of `contract`'s version in a linked plugin.
            pub(crate) fn new(
                contract: Contract,
                pre: &InstancePre<HostState>,
            ) -> wasmtime::Result<Self> {
                Ok(match contract {
                    Contract::V0_1 => $indices::V0_1(v0_1::$module::GuestIndices::new(pre)?),
                    Contract::V0_2 => $indices::V0_2(v0_2::$module::GuestIndices::new(pre)?),
                    Contract::V0_3 => $indices::V0_3(v0_3::$module::GuestIndices::new(pre)?),
                    Contract::V0_4 => $indices::V0_4(now::$module::GuestIndices::new(pre)?),
                })
            }

            /// Loads the export from an instance of the plugin.
            pub(crate) fn load(
                &self,
                store: &mut Store<HostState>,
                instance: &Instance,
            ) -> wasmtime::Result<$guest> {
                Ok(match self {
                    $indices::V0_1(i) => $guest::V0_1(i.load(store, instance)?),
                    $indices::V0_2(i) => $guest::V0_2(i.load(store, instance)?),
                    $indices::V0_3(i) => $guest::V0_3(i.load(store, instance)?),
                    $indices::V0_4(i) => $guest::V0_4(i.load(store, instance)?),
                })
            }
        }
    };
}

export_handle!(LifecycleIndices, Lifecycle, lifecycle);
export_handle!(AdmissionIndices, Admission, admission);
export_handle!(FilterIndices, Filter, log_filter);

impl Lifecycle {
    /// `init`, the same in every version.
    pub(crate) fn call_init(
        &self,
        store: &mut Store<HostState>,
        settings: &str,
    ) -> wasmtime::Result<Result<(), String>> {
        match self {
            Lifecycle::V0_1(g) => g.call_init(store, settings),
            Lifecycle::V0_2(g) => g.call_init(store, settings),
            Lifecycle::V0_3(g) => g.call_init(store, settings),
            Lifecycle::V0_4(g) => g.call_init(store, settings),
        }
    }
}

impl Admission {
    /// `admit`, whose answer gained `allow-patched` in 0.3.0; older
    /// answers come back in 0.3.0's form.
    pub(crate) fn call_admit(
        &self,
        store: &mut Store<HostState>,
        ctx: &JobContext,
        job: &str,
    ) -> wasmtime::Result<Result<Response, String>> {
        Ok(match self {
            Admission::V0_1(g) => g.call_admit(store, ctx, job)?.map(upgrade),
            Admission::V0_2(g) => g.call_admit(store, ctx, job)?.map(upgrade),
            Admission::V0_3(g) => g.call_admit(store, ctx, job)?.map(same),
            Admission::V0_4(g) => g.call_admit(store, ctx, job)?,
        })
    }
}

/// A 0.1.0 or 0.2.0 answer in 0.3.0's form: the same cases, one fewer.
fn upgrade(response: host::AdmissionResponse) -> Response {
    Response {
        decision: match response.decision {
            host::Decision::Allow => Decision::Allow,
            host::Decision::AllowMutated(job) => Decision::AllowMutated(job),
            host::Decision::Deny(message) => Decision::Deny(message),
        },
        warnings: response.warnings,
    }
}

/// A 0.3.0 answer in the current form: the same type, generated twice.
fn same(response: v0_3::admission::Response) -> Response {
    use v0_3::admission::Decision as Old;
    Response {
        decision: match response.decision {
            Old::Allow => Decision::Allow,
            Old::AllowPatched(patch) => Decision::AllowPatched(patch),
            Old::AllowMutated(job) => Decision::AllowMutated(job),
            Old::Deny(message) => Decision::Deny(message),
        },
        warnings: response.warnings,
    }
}

/// What a filter returned, in its version's form.
pub(crate) enum Filtered {
    /// 0.1.0: every record to keep.
    Records(Vec<LogRecord>),
    /// 0.2.0 on: the changes to the batch.
    Edits(Vec<LogEdit>),
}

impl Filter {
    /// `filter`, whose result changed form in 0.2.0 and whose batch did in
    /// 0.4.0.
    pub(crate) fn call_filter(
        &self,
        store: &mut Store<HostState>,
        ctx: &LogContext,
        records: &[LogRecord],
    ) -> wasmtime::Result<Result<Filtered, String>> {
        Ok(match self {
            Filter::V0_1(g) => g.call_filter(store, ctx, records)?.map(Filtered::Records),
            Filter::V0_2(g) => g.call_filter(store, ctx, records)?.map(Filtered::Edits),
            Filter::V0_3(g) => g.call_filter(store, ctx, records)?.map(Filtered::Edits),
            Filter::V0_4(g) => g
                .call_filter(store, ctx, &joined(records))?
                .map(Filtered::Edits),
        })
    }
}

/// `records` as one text, a line each: a string per record costs the guest
/// an allocation and the host a call into it to make one, which was most of
/// a cheap filter's time. No record holds a line break: the log follower
/// splits on them and [`Filtered::apply`] refuses records that do.
fn joined(records: &[LogRecord]) -> now::log_filter::LogBatch {
    let bytes = records.iter().map(|r| r.text.len() + 1).sum();
    let mut text = String::with_capacity(bytes);
    let mut streams = Vec::with_capacity(records.len());
    for (i, record) in records.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        text.push_str(&record.text);
        streams.push(record.stream);
    }
    now::log_filter::LogBatch { text, streams }
}

/// Why a list of edits does not fit its batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// An edit names a record past the batch's end.
    #[error("edit {edit} names record {index}, but the batch has {len} records (0 to {last})", last = len.saturating_sub(1))]
    OutOfRange {
        /// The edit's position in the list.
        edit: usize,
        /// The index it names.
        index: u32,
        /// The batch's length.
        len: usize,
    },
    /// An edit comes after one of a later record, or inserts after the record
    /// of its index was already dropped or replaced.
    #[error(
        "edit {edit} ({what} record {index}) comes after an edit of record {after}; edits must be in order of their index, inserts first"
    )]
    OutOfOrder {
        /// The edit's position in the list.
        edit: usize,
        /// `drop`, `replace` or `insert before`.
        what: &'static str,
        /// The index it names.
        index: u32,
        /// The index of the edit before it.
        after: u32,
    },
    /// A record the plugin returned holds a line break.
    #[error(
        "{what} {at} holds a line break (\"\\n\"); a record is one line of the log, without its terminator"
    )]
    LineBreak {
        /// Which kind of record.
        what: &'static str,
        /// Its position in the answer.
        at: usize,
    },
}

impl Filtered {
    /// Whether the answer leaves the batch as it is without looking at it:
    /// no edits. (A 0.1.0 answer is a whole batch, so never.)
    pub(crate) fn is_empty(&self) -> bool {
        matches!(self, Filtered::Edits(edits) if edits.is_empty())
    }

    /// Turns `records`, the batch the filter was given, into the batch after
    /// it: whether anything changed. A 0.1.0 answer replaces the batch; edits
    /// move the records they keep, so a batch is never copied. The answer
    /// is checked whole before anything is applied, so on an error
    /// `records` is as it was.
    pub(crate) fn apply(self, records: &mut Vec<LogRecord>) -> Result<bool, EditError> {
        let edits = match self {
            Filtered::Records(kept) => {
                if let Some(at) = kept.iter().position(|r| holds_line_break(&r.text)) {
                    return Err(EditError::LineBreak {
                        what: "kept record",
                        at,
                    });
                }
                *records = kept;
                return Ok(true);
            }
            Filtered::Edits(edits) => edits,
        };
        if edits.is_empty() {
            return Ok(false);
        }
        check(&edits, records.len())?;
        let input = std::mem::take(records);
        records.reserve(input.len() + edits.len());
        let mut input = input.into_iter();
        // `next` is the first input record not yet moved or edited.
        let mut next = 0usize;
        for change in edits {
            let at = index(&change) as usize;
            records.extend(input.by_ref().take(at - next));
            next = at;
            match change {
                LogEdit::Drop(_) => {
                    input.next();
                    next += 1;
                }
                LogEdit::Replace((_, record)) => {
                    input.next();
                    records.push(record);
                    next += 1;
                }
                LogEdit::Insert((_, record)) => records.push(record),
            }
        }
        records.extend(input);
        Ok(true)
    }
}

/// Whether `text` is more than one line: a record must not be. memchr's
/// SIMD search, since the host asks this of every record of every batch.
pub(crate) fn holds_line_break(text: &str) -> bool {
    memchr::memchr(b'\n', text.as_bytes()).is_some()
}

/// The record an edit names.
fn index(edit: &LogEdit) -> u32 {
    match edit {
        LogEdit::Drop(i) | LogEdit::Replace((i, _)) | LogEdit::Insert((i, _)) => *i,
    }
}

/// Checks that `edits` fit a batch of `len` records: in range, in order,
/// and no record of more than one line.
fn check(edits: &[LogEdit], len: usize) -> Result<(), EditError> {
    // `next` is the first record not yet consumed by a drop or replace.
    let mut next = 0usize;
    for (edit, change) in edits.iter().enumerate() {
        let (what, consumes, record) = match change {
            LogEdit::Drop(_) => ("drop", true, None),
            LogEdit::Replace((_, r)) => ("replace", true, Some(r)),
            LogEdit::Insert((_, r)) => ("insert before", false, Some(r)),
        };
        let index = index(change);
        let at = index as usize;
        // An insert may name the end of the batch; the others a record.
        let limit = if consumes { len } else { len + 1 };
        if at >= limit {
            return Err(EditError::OutOfRange { edit, index, len });
        }
        if at < next {
            return Err(EditError::OutOfOrder {
                edit,
                what,
                index,
                after: next.saturating_sub(1) as u32,
            });
        }
        if record.is_some_and(|r| holds_line_break(&r.text)) {
            return Err(EditError::LineBreak {
                what: "the record of edit",
                at: edit,
            });
        }
        next = if consumes { at + 1 } else { at };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::Stream;

    fn rec(text: &str) -> LogRecord {
        LogRecord {
            stream: Stream::Stdout,
            text: text.to_owned(),
        }
    }

    fn texts(records: &[LogRecord]) -> Vec<&str> {
        records.iter().map(|r| r.text.as_str()).collect()
    }

    fn batch() -> Vec<LogRecord> {
        ["a", "b", "c"].into_iter().map(rec).collect()
    }

    /// The batch after `filtered`, or why it does not fit; the batch
    /// is as it was after an error.
    fn applied(filtered: Filtered) -> Result<Vec<LogRecord>, EditError> {
        let mut records = batch();
        filtered.apply(&mut records).inspect_err(|_| {
            assert_eq!(
                records,
                batch(),
                "an answer that does not fit changes nothing"
            );
        })?;
        Ok(records)
    }

    #[test]
    fn no_edits_keep_the_batch() {
        let mut records = batch();
        assert_eq!(Filtered::Edits(vec![]).apply(&mut records), Ok(false));
        assert_eq!(records, batch());
    }

    #[test]
    fn a_batch_crosses_as_its_lines_joined_with_a_stream_each() {
        let mut records = batch();
        records[1].stream = Stream::Stderr;
        records.push(rec(""));
        let joined = joined(&records);
        assert_eq!(joined.text, "a\nb\nc\n");
        assert_eq!(
            joined.streams,
            [
                Stream::Stdout,
                Stream::Stderr,
                Stream::Stdout,
                Stream::Stdout
            ]
        );
        let one_empty = super::joined(&[rec("")]);
        assert_eq!((one_empty.text.as_str(), one_empty.streams.len()), ("", 1));
    }

    #[test]
    fn a_record_of_two_lines_is_refused_whichever_version_sent_it() {
        let err = applied(Filtered::Edits(vec![
            LogEdit::Drop(0),
            LogEdit::Replace((1, rec("b\nforged line"))),
        ]))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the record of edit 1 holds a line break (\"\\n\"); a record is one line of the log, without its terminator"
        );
        let err = applied(Filtered::Records(vec![rec("a"), rec("b\n")])).unwrap_err();
        assert_eq!(
            err,
            EditError::LineBreak {
                what: "kept record",
                at: 1
            }
        );
    }

    #[test]
    fn edits_drop_replace_and_insert_anywhere_including_the_end() {
        let edits = vec![
            LogEdit::Insert((0, rec("first"))),
            LogEdit::Drop(0),
            LogEdit::Replace((1, rec("B"))),
            LogEdit::Insert((2, rec("before c"))),
            LogEdit::Insert((3, rec("last"))),
        ];
        let out = applied(Filtered::Edits(edits)).unwrap();
        assert_eq!(texts(&out), ["first", "B", "before c", "c", "last"]);
    }

    #[test]
    fn a_record_past_the_end_is_named() {
        let err = applied(Filtered::Edits(vec![LogEdit::Drop(3)])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "edit 0 names record 3, but the batch has 3 records (0 to 2)"
        );
    }

    #[test]
    fn edits_out_of_order_or_twice_on_one_record_are_refused() {
        let backwards = vec![LogEdit::Drop(2), LogEdit::Drop(1)];
        assert!(matches!(
            applied(Filtered::Edits(backwards)),
            Err(EditError::OutOfOrder {
                edit: 1,
                index: 1,
                after: 2,
                ..
            })
        ));
        let twice = vec![LogEdit::Drop(1), LogEdit::Replace((1, rec("x")))];
        assert!(matches!(
            applied(Filtered::Edits(twice)),
            Err(EditError::OutOfOrder { edit: 1, .. })
        ));
        let insert_after_drop = vec![LogEdit::Drop(1), LogEdit::Insert((1, rec("x")))];
        assert!(matches!(
            applied(Filtered::Edits(insert_after_drop)),
            Err(EditError::OutOfOrder { edit: 1, .. })
        ));
    }

    #[test]
    fn a_version_is_parsed_and_the_supported_ones_are_listed() {
        assert_eq!(Contract::parse("0.1.0"), Some(Contract::V0_1));
        assert_eq!(Contract::parse("0.2.0"), Some(Contract::V0_2));
        assert_eq!(Contract::parse("0.3.0"), Some(Contract::V0_3));
        assert_eq!(Contract::parse("0.4.0"), Some(Contract::CURRENT));
        assert_eq!(Contract::parse("0.5.0"), None);
        assert_eq!(Contract::supported(), "0.1.0, 0.2.0, 0.3.0 and 0.4.0");
        assert_eq!(
            Contract::V0_1.interface("log-filter"),
            "executor:plugin/log-filter@0.1.0"
        );
    }
}
