//! Who a request comes from and whether they may make it: bearer-token authentication (an admin token and ServiceAccount tokens), impersonation, RBAC authorization with the real server's semantics and wording, the bootstrap roles, and the certificates the API is served with.

pub mod attributes;
pub mod bootstrap;
pub mod rbac;
pub mod tls;
mod tokens;
pub mod validation;

use std::sync::OnceLock;
use std::time::Duration;

use crate::resources::{RESOURCES, Resource};
use crate::store::{Key, Store};

pub use tokens::MAX_TOKENS;
use tokens::{Subject, Tokens};

/// The name the admin identity of the written kubeconfig authenticates as.
pub const ADMIN_USER: &str = "admin";
/// The group whose members may do everything (kube-apiserver's privileged group).
pub const MASTERS: &str = "system:masters";

/// An authenticated (or anonymous) user, as the authorizer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// `admin`, `system:serviceaccount:<ns>:<name>`, `system:anonymous`.
    pub name: String,
    /// The ServiceAccount's uid, or empty.
    pub uid: String,
    /// Groups, `system:authenticated` included when authenticated.
    pub groups: Vec<String>,
}

impl User {
    /// The admin identity: `admin` in `system:masters`.
    pub fn admin() -> User {
        User {
            name: ADMIN_USER.to_owned(),
            uid: String::new(),
            groups: vec![MASTERS.to_owned(), "system:authenticated".to_owned()],
        }
    }

    /// The anonymous user (only the health and version endpoints admit it).
    pub fn anonymous() -> User {
        User {
            name: "system:anonymous".to_owned(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".to_owned()],
        }
    }

    /// ServiceAccount `name` of `namespace`, with the groups the real token
    /// authenticator gives it.
    pub fn service_account(namespace: &str, name: &str, uid: &str) -> User {
        User {
            name: format!("system:serviceaccount:{namespace}:{name}"),
            uid: uid.to_owned(),
            groups: vec![
                "system:serviceaccounts".to_owned(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".to_owned(),
            ],
        }
    }

    /// Whether the user is in `system:masters`.
    pub fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == MASTERS)
    }
}

/// The served resource `plural` of `group` (auth reads the store without
/// going through the cluster, which holds it).
pub(crate) fn resource(group: &str, plural: &str) -> &'static Resource {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.name == plural)
        .unwrap_or(&RESOURCES[0])
}

/// `system:serviceaccount:<ns>:<name>` split into namespace and name.
pub fn service_account_of(username: &str) -> Option<(&str, &str)> {
    let rest = username.strip_prefix("system:serviceaccount:")?;
    let (ns, name) = rest.split_once(':')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains(':')).then_some((ns, name))
}

/// Why a token cannot be issued.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The registry holds [`MAX_TOKENS`] live tokens.
    #[error("too many tokens issued; let some expire")]
    Full,
}

/// The cluster's authentication state: the admin token, ServiceAccount
/// tokens, and the CA clients are told to trust.
pub struct Auth {
    admin_token: String,
    tokens: Tokens,
    ca_pem: OnceLock<String>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens never go into a log.
        f.debug_struct("Auth").finish_non_exhaustive()
    }
}

impl Default for Auth {
    fn default() -> Self {
        Auth::new()
    }
}

impl Auth {
    /// Fresh state with a new random admin token.
    pub fn new() -> Auth {
        Auth {
            admin_token: tokens::random_token(),
            tokens: Tokens::default(),
            ca_pem: OnceLock::new(),
        }
    }

    /// The admin identity's bearer token (what the written kubeconfig holds).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Records the CA the API is served under (PEM).
    pub fn set_ca(&self, pem: String) {
        let _ = self.ca_pem.set(pem);
    }

    /// The CA (PEM), or `None` when the API is served over plain HTTP.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.get().map(String::as_str)
    }

    /// The user `token` authenticates, if any: the admin, or a
    /// ServiceAccount that still exists with the uid the token was issued
    /// for (deleting the account revokes its tokens, as on a real cluster).
    pub fn authenticate(&self, store: &Store, token: &str) -> Option<User> {
        if tokens::same(token, &self.admin_token) {
            return Some(User::admin());
        }
        match self.tokens.lookup(token)? {
            Subject::ServiceAccount {
                namespace,
                name,
                uid,
            } => {
                let sa = resource("", "serviceaccounts");
                let current = store.get(&Key::new(sa, &namespace, &name))?;
                (current["metadata"]["uid"].as_str() == Some(uid.as_str()))
                    .then(|| User::service_account(&namespace, &name, &uid))
            }
        }
    }

    /// The token a pod of ServiceAccount `namespace/name` (uid `uid`) mounts:
    /// one per account, made on first use.
    pub fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
    ) -> Result<String, TokenError> {
        self.tokens.for_account(namespace, name, uid)
    }

    /// A new token for the ServiceAccount (a `TokenRequest`), valid for
    /// `lifetime`.
    pub fn issue_token(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        lifetime: Duration,
    ) -> Result<String, TokenError> {
        self.tokens.issue(namespace, name, uid, lifetime)
    }
}
