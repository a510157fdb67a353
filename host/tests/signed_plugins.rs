//! A plugin pinned to a signing key (`publicKey`) loads only with a signature by that key, in the format `cosign sign-blob --key` and `openssl dgst -sha256 -sign` write.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use executor::plugins::{
    FailurePolicy, LoadError, PluginSpec, Plugins, PluginsConfig, Runtime, RuntimeOptions, Trust,
};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePublicKey, LineEnding};

fn runtime() -> Arc<Runtime> {
    static RUNTIME: OnceLock<Arc<Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            Runtime::new(&RuntimeOptions {
                max_instances: 8,
                cache_dir: Some(executor_tests::plugin_cache()),
            })
            .unwrap()
        })
        .clone()
}

/// A P-256 key made from `seed` (a fixed key keeps failures reproducible;
/// signing uses RFC 6979 nonces, so no randomness is needed).
fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32].into()).unwrap()
}

/// What `cosign sign-blob --key` writes with `--output-signature`: base64 of
/// the DER ECDSA signature over the file's SHA-256.
fn cosign_signature(key: &SigningKey, bytes: &[u8]) -> String {
    let signature: Signature = key.sign(bytes);
    base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes())
}

/// The built `annotate` plugin copied into a fresh folder, with `cosign.pub`
/// (key 1) and `annotate.wasm.sig` (by key 1) beside it, as a user lays them out.
struct Signed {
    dir: tempfile::TempDir,
}

impl Signed {
    fn new() -> Signed {
        let dir = tempfile::tempdir().unwrap();
        let wasm = executor_tests::components().bytes("annotate");
        std::fs::write(dir.path().join("annotate.wasm"), &wasm).unwrap();
        let public = key(1)
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        std::fs::write(dir.path().join("cosign.pub"), public).unwrap();
        std::fs::write(
            dir.path().join("annotate.wasm.sig"),
            cosign_signature(&key(1), &wasm),
        )
        .unwrap();
        Signed { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn spec(&self) -> PluginSpec {
        let wasm = self.path("annotate.wasm");
        let mut spec = PluginSpec::new("annotate", &wasm);
        spec.trust = Some(Trust::beside(&wasm, self.path("cosign.pub")));
        spec
    }
}

/// Loading `spec` alone must fail; the one error.
fn refused(spec: PluginSpec) -> LoadError {
    match Plugins::load(
        runtime(),
        &PluginsConfig {
            plugins: vec![spec],
        },
    ) {
        Ok(_) => panic!("the plugin loaded, but it should have been refused"),
        Err(mut errors) => {
            assert_eq!(errors.0.len(), 1, "{errors}");
            errors.0.remove(0)
        }
    }
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn a_plugin_signed_by_its_key_loads_from_a_configuration_naming_the_key() {
    let signed = Signed::new();
    let digest = executor_tests::sha256_hex(&std::fs::read(signed.path("annotate.wasm")).unwrap());
    // Both pins at once: each must pass.
    let config = signed.path("plugins.yaml");
    std::fs::write(
        &config,
        format!(
            "plugins:\n  - name: annotate\n    path: annotate.wasm\n    publicKey: cosign.pub\n    sha256: {digest}\n"
        ),
    )
    .unwrap();
    let config = PluginsConfig::from_file(&config).unwrap();
    let plugins = Plugins::load(runtime(), &config)
        .unwrap_or_else(|e| panic!("a signed plugin was refused: {e}"));
    assert_eq!(plugins.info()[0].name, "annotate");
}

#[test]
fn a_plugin_changed_after_signing_is_refused_naming_the_file_the_signature_and_the_key() {
    let signed = Signed::new();
    let wasm = signed.path("annotate.wasm");
    let mut bytes = std::fs::read(&wasm).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&wasm, bytes).unwrap();
    let err = refused(signed.spec());
    assert!(
        matches!(err, LoadError::SignatureMismatch { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "plugin `annotate`: {} does not match signature {} by public key {}: the file changed after it was signed, or another key signed it; refusing it",
            shown(&wasm),
            shown(&signed.path("annotate.wasm.sig")),
            shown(&signed.path("cosign.pub")),
        )
    );
}

#[test]
fn a_plugin_signed_by_another_key_is_refused() {
    let signed = Signed::new();
    let wasm = std::fs::read(signed.path("annotate.wasm")).unwrap();
    std::fs::write(
        signed.path("annotate.wasm.sig"),
        cosign_signature(&key(2), &wasm),
    )
    .unwrap();
    let err = refused(signed.spec());
    assert!(
        matches!(err, LoadError::SignatureMismatch { .. }),
        "{err:?}"
    );
}

#[test]
fn a_missing_signature_is_refused_naming_where_it_was_expected_and_how_to_make_one() {
    let signed = Signed::new();
    let sig = signed.path("annotate.wasm.sig");
    std::fs::remove_file(&sig).unwrap();
    let err = refused(signed.spec());
    assert_eq!(
        err.to_string(),
        format!(
            "plugin `annotate`: no signature at {sig}, which its `publicKey` requires; sign the plugin with `cosign sign-blob --key cosign.key --output-signature {sig} {wasm}` (cosign 3: add `--new-bundle-format=false`)",
            sig = shown(&sig),
            wasm = shown(&signed.path("annotate.wasm")),
        )
    );
}

#[test]
fn a_signature_file_that_is_not_base64_der_is_refused_without_echoing_it() {
    let signed = Signed::new();
    let sig = signed.path("annotate.wasm.sig");
    std::fs::write(&sig, "\x1b[2J<not a signature>").unwrap();
    let err = refused(signed.spec()).to_string();
    assert_eq!(
        err,
        format!(
            "plugin `annotate`: signature {} is not base64; expected the base64 text that `cosign sign-blob --output-signature` writes",
            shown(&sig)
        )
    );
    std::fs::write(&sig, "aGVsbG8gd29ybGQ=\n").unwrap();
    let err = refused(signed.spec()).to_string();
    assert!(
        err.ends_with("is base64 but not of an ASN.1 DER ECDSA signature"),
        "{err}"
    );
}

#[test]
fn a_key_file_that_is_missing_or_not_a_p256_public_key_is_refused_naming_it() {
    let signed = Signed::new();
    let key_file = signed.path("cosign.pub");
    std::fs::remove_file(&key_file).unwrap();
    let err = refused(signed.spec()).to_string();
    assert!(
        err.starts_with(&format!(
            "plugin `annotate`: cannot read public key {}: ",
            shown(&key_file)
        )),
        "{err}"
    );
    // `openssl genpkey -algorithm ed25519 | openssl pkey -pubout`.
    std::fs::write(
        &key_file,
        "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAuJR0y7YswrMrkszh+0kSt77vmq3sRKCQwOvnvyWqLOc=\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    assert_eq!(
        refused(signed.spec()).to_string(),
        format!(
            "plugin `annotate`: public key {} is an Ed25519 key; only ECDSA P-256 keys (cosign's default) are supported",
            shown(&key_file)
        )
    );
}

#[test]
fn a_refused_signature_follows_the_failure_policy_like_any_load_failure() {
    let signed = Signed::new();
    std::fs::remove_file(signed.path("annotate.wasm.sig")).unwrap();
    let mut spec = signed.spec();
    spec.failure_policy = FailurePolicy::Ignore;
    let plugins = Plugins::load(
        runtime(),
        &PluginsConfig {
            plugins: vec![spec],
        },
    )
    .unwrap();
    assert!(plugins.info().is_empty());
    assert!(
        plugins.skipped()[0].contains("no signature at"),
        "{:?}",
        plugins.skipped()
    );
}

#[test]
fn a_matching_signature_does_not_excuse_a_sha256_pin_mismatch() {
    let signed = Signed::new();
    let mut spec = signed.spec();
    spec.sha256 = Some("0".repeat(64));
    let err = refused(spec);
    assert!(matches!(err, LoadError::Digest { .. }), "{err:?}");
}

/// Signs with the openssl command line, exactly as the README tells users
/// to, so that the format is the one real tools write (and openssl's
/// signatures, unlike RustCrypto's, may carry either form of `s`).
#[test]
fn a_signature_made_with_openssl_verifies() {
    let openssl = |args: &[&str], dir: &Path| {
        std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
    };
    let signed = Signed::new();
    let dir = signed.dir.path();
    match openssl(&["version"], dir) {
        Ok(out) if out.status.success() => {}
        _ => {
            println!("skipped: no `openssl` command to sign with");
            return;
        }
    }
    for args in [
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "key.pem",
        ][..],
        &["ec", "-in", "key.pem", "-pubout", "-out", "cosign.pub"],
        &[
            "dgst",
            "-sha256",
            "-sign",
            "key.pem",
            "-out",
            "sig.der",
            "annotate.wasm",
        ],
    ] {
        let out = openssl(args, dir).unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // `base64 -w0 sig.der > annotate.wasm.sig`, plus the newline an editor adds.
    let der = std::fs::read(dir.join("sig.der")).unwrap();
    let text = base64::engine::general_purpose::STANDARD.encode(der) + "\n";
    std::fs::write(signed.path("annotate.wasm.sig"), text).unwrap();
    Plugins::load(
        runtime(),
        &PluginsConfig {
            plugins: vec![signed.spec()],
        },
    )
    .unwrap_or_else(|e| panic!("an openssl signature was refused: {e}"));
}
