//! The token registry: opaque random bearer tokens and the ServiceAccount each stands for, with expiry and a bound on how many live at once.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::TokenError;

/// Live tokens kept at most (TokenRequests beyond it are refused until some expire).
pub const MAX_TOKENS: usize = 100_000;

/// What a token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Subject {
    /// A ServiceAccount, by namespace, name and the uid it had when the token was issued.
    ServiceAccount {
        namespace: String,
        name: String,
        uid: String,
    },
}

#[derive(Debug)]
struct Entry {
    subject: Subject,
    expires: Option<Instant>,
}

#[derive(Default)]
struct Inner {
    by_token: HashMap<String, Entry>,
    /// The mounted token of each account, by (namespace, name, uid).
    mounted: HashMap<(String, String, String), String>,
}

/// Every token issued.
#[derive(Default)]
pub(super) struct Tokens {
    inner: Mutex<Inner>,
}

/// 256 random bits from the OS (two v4 UUIDs' worth), as hex.
pub(super) fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Compares two tokens in time independent of where they differ.
pub(super) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Tokens {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What `token` stands for, when it is live.
    pub(super) fn lookup(&self, token: &str) -> Option<Subject> {
        let inner = self.lock();
        let entry = inner.by_token.get(token)?;
        if entry.expires.is_some_and(|at| at <= Instant::now()) {
            return None;
        }
        Some(entry.subject.clone())
    }

    pub(super) fn for_account(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
    ) -> Result<String, TokenError> {
        let mut inner = self.lock();
        let key = (namespace.to_owned(), name.to_owned(), uid.to_owned());
        if let Some(token) = inner.mounted.get(&key) {
            return Ok(token.clone());
        }
        let token = insert(&mut inner, subject(namespace, name, uid), None)?;
        inner.mounted.insert(key, token.clone());
        Ok(token)
    }

    pub(super) fn issue(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        lifetime: Duration,
    ) -> Result<String, TokenError> {
        let mut inner = self.lock();
        insert(
            &mut inner,
            subject(namespace, name, uid),
            Instant::now().checked_add(lifetime),
        )
    }
}

fn subject(namespace: &str, name: &str, uid: &str) -> Subject {
    Subject::ServiceAccount {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        uid: uid.to_owned(),
    }
}

fn insert(
    inner: &mut Inner,
    subject: Subject,
    expires: Option<Instant>,
) -> Result<String, TokenError> {
    if inner.by_token.len() >= MAX_TOKENS {
        let now = Instant::now();
        inner
            .by_token
            .retain(|_, e| e.expires.is_none_or(|at| at > now));
        if inner.by_token.len() >= MAX_TOKENS {
            return Err(TokenError::Full);
        }
    }
    let token = random_token();
    inner
        .by_token
        .insert(token.clone(), Entry { subject, expires });
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_mounts_one_token_and_a_request_gets_a_new_one() {
        let t = Tokens::default();
        let a = t.for_account("ns", "sa", "u1").unwrap();
        assert_eq!(t.for_account("ns", "sa", "u1").unwrap(), a);
        let b = t.issue("ns", "sa", "u1", Duration::from_secs(60)).unwrap();
        assert_ne!(a, b);
        assert_eq!(t.lookup(&b), Some(subject("ns", "sa", "u1")));
        assert_eq!(t.lookup("nope"), None);
    }

    #[test]
    fn an_expired_token_authenticates_no_one() {
        let t = Tokens::default();
        let gone = t.issue("ns", "sa", "u1", Duration::ZERO).unwrap();
        assert_eq!(t.lookup(&gone), None);
    }

    #[test]
    fn tokens_compare_equal_only_when_identical() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
    }
}
