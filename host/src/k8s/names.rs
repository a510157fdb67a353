//! Deterministic DNS-1123 names for a job's objects: a retried create finds the same name, two jobs never share one.

use sha2::{Digest, Sha256};

/// The longest a DNS-1123 label (and so a Job name) may be.
pub const MAX_NAME: usize = 63;

/// Length of the hash suffix of a shortened name.
const HASH_LEN: usize = 10;

/// `<prefix>-<queue>-<id>` as a DNS-1123 label. Characters outside
/// `[a-z0-9-]` become `-`; a name longer than 63 characters is cut and gets a
/// hash of the whole original, so distinct jobs never collide by truncation.
/// Including the queue keeps equal ids of different queues apart.
pub fn job_name(prefix: &str, queue: &str, id: i64) -> String {
    let full = format!("{prefix}-{queue}-{id}");
    let clean = sanitize(&full);
    if clean.len() <= MAX_NAME && clean == full {
        return clean;
    }
    // Hash the original, not the sanitised form, so "a.b" and "a_b" differ.
    let hash = hex::encode(Sha256::digest(full.as_bytes()));
    let keep = MAX_NAME - HASH_LEN - 1;
    let head = clean[..clean.len().min(keep)].trim_end_matches('-');
    format!("{head}-{}", &hash[..HASH_LEN])
}

fn sanitize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars().map(|c| c.to_ascii_lowercase()) {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if !(c == '-' && (out.is_empty() || out.ends_with('-'))) {
            out.push(c);
        }
    }
    out.trim_end_matches('-').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_label(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= MAX_NAME
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    }

    #[test]
    fn short_clean_names_are_kept_as_they_are() {
        assert_eq!(
            job_name("sg-executor", "batches", 1234),
            "sg-executor-batches-1234"
        );
        assert_ne!(job_name("x", "batches", 1), job_name("x", "codeintel", 1));
    }

    #[test]
    fn unclean_or_long_names_get_a_hash_and_stay_valid() {
        let a = job_name("Executor", "my_queue", 7);
        let b = job_name("executor", "my-queue", 7);
        assert!(is_label(&a) && is_label(&b));
        assert_ne!(a, b, "sanitising must not merge two jobs");
        let long_queue = "q".repeat(80);
        let x = job_name("sg-executor", &long_queue, 1);
        let y = job_name("sg-executor", &long_queue, 2);
        assert!(is_label(&x) && is_label(&y) && x != y, "{x} {y}");
        assert_eq!(x.len(), MAX_NAME);
        assert_eq!(x, job_name("sg-executor", &long_queue, 1), "deterministic");
    }
}
