//! Checks a plugin's bytes against the signing key it is pinned to (a detached signature as `cosign sign-blob --key` writes it); reads only the key and signature files, and never shows their text.

use std::io::Read;
use std::path::Path;

use base64::Engine as _;
use p256::NistP256;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::elliptic_curve::ALGORITHM_OID as EC_PUBLIC_KEY;
use p256::pkcs8::der::pem;
use p256::pkcs8::{AssociatedOid, ObjectIdentifier, SubjectPublicKeyInfoRef};

use super::config::{PluginSpec, Trust};
use super::error::{KeyProblem, LoadError, SignatureProblem};

/// The most read of a key or signature file: a P-256 public key in PEM is
/// 178 bytes and a signature of it under 100, so a larger file is neither,
/// and a path mistakenly pointing at a large file is not read whole.
const MAX_FILE_BYTES: u64 = 64 << 10;

/// Checks that `trust.signature` holds `trust.public_key`'s signature of
/// the plugin file whose SHA-256 is `sha256`: ECDSA P-256 over the SHA-256
/// of the file, base64 of ASN.1 DER, as `cosign sign-blob --key` and
/// `openssl dgst -sha256 -sign` (then base64) write it. Offline: nothing
/// but the two files is consulted.
pub(crate) fn verify(spec: &PluginSpec, trust: &Trust, sha256: &[u8]) -> Result<(), LoadError> {
    let key = read_key(spec, trust)?;
    let signature = read_signature(spec, trust)?;
    // ECDSA signs the message's digest, so verifying the digest of the
    // bytes already read is verifying the bytes, without hashing them twice.
    key.verify_prehash(sha256, &signature)
        .map_err(|_| LoadError::SignatureMismatch {
            plugin: spec.name.clone(),
            path: spec.path.clone(),
            signature: trust.signature.clone(),
            public_key: trust.public_key.clone(),
        })
}

fn read_key(spec: &PluginSpec, trust: &Trust) -> Result<VerifyingKey, LoadError> {
    let path = &trust.public_key;
    let problem = |problem| LoadError::Key {
        plugin: spec.name.clone(),
        path: path.clone(),
        problem,
    };
    match read_capped(path) {
        Ok(Some(pem)) => public_key(&pem).map_err(problem),
        Ok(None) => Err(problem(KeyProblem::TooLarge {
            limit_kib: MAX_FILE_BYTES >> 10,
        })),
        Err(source) => Err(LoadError::KeyRead {
            plugin: spec.name.clone(),
            path: path.clone(),
            source,
        }),
    }
}

fn read_signature(spec: &PluginSpec, trust: &Trust) -> Result<Signature, LoadError> {
    let path = &trust.signature;
    let problem = |problem| LoadError::Signature {
        plugin: spec.name.clone(),
        path: path.clone(),
        problem,
    };
    match read_capped(path) {
        Ok(Some(text)) => signature(&text).map_err(problem),
        Ok(None) => Err(problem(SignatureProblem::TooLarge {
            limit_kib: MAX_FILE_BYTES >> 10,
        })),
        Err(source) if source.kind() == std::io::ErrorKind::NotFound => {
            Err(LoadError::SignatureMissing {
                plugin: spec.name.clone(),
                path: spec.path.clone(),
                signature: path.clone(),
            })
        }
        Err(source) => Err(LoadError::SignatureRead {
            plugin: spec.name.clone(),
            path: path.clone(),
            source,
        }),
    }
}

/// The file's bytes, or `None` when it is larger than [`MAX_FILE_BYTES`].
fn read_capped(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= MAX_FILE_BYTES).then_some(bytes))
}

/// The P-256 key of a PEM `PUBLIC KEY` block (SubjectPublicKeyInfo), as
/// `cosign generate-key-pair` writes to cosign.pub and `openssl ec -pubout`
/// writes; any other content is named by what it was recognised as.
fn public_key(text: &[u8]) -> Result<VerifyingKey, KeyProblem> {
    // Text before the block (which openssl allows) and whitespace after it
    // are not part of the key.
    let start = text
        .windows(BEGIN.len())
        .position(|w| w == BEGIN)
        .ok_or(KeyProblem::NotPem)?;
    let block = text[start..].trim_ascii_end();
    match pem::decode_label(block).map_err(|_| KeyProblem::NotPem)? {
        "PUBLIC KEY" => {}
        label if label.ends_with("PRIVATE KEY") => return Err(KeyProblem::PrivateKey),
        "CERTIFICATE" | "TRUSTED CERTIFICATE" | "X509 CERTIFICATE" => {
            return Err(KeyProblem::Certificate);
        }
        "RSA PUBLIC KEY" => {
            return Err(KeyProblem::Unsupported {
                found: "an RSA key".into(),
            });
        }
        _ => return Err(KeyProblem::OtherBlock),
    }
    let (_, der) = pem::decode_vec(block).map_err(|_| KeyProblem::NotSpki)?;
    let spki =
        SubjectPublicKeyInfoRef::try_from(der.as_slice()).map_err(|_| KeyProblem::NotSpki)?;
    let (algorithm, parameters) = spki.algorithm.oids().map_err(|_| KeyProblem::NotSpki)?;
    if (algorithm, parameters) != (EC_PUBLIC_KEY, Some(NistP256::OID)) {
        return Err(KeyProblem::Unsupported {
            found: key_type(algorithm, parameters),
        });
    }
    VerifyingKey::try_from(spki).map_err(|_| KeyProblem::BadPoint)
}

const BEGIN: &[u8] = b"-----BEGIN ";

const RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const RSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const DSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10040.4.1");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const ED448: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.113");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const P521: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");
const SECP256K1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.10");

/// Names a key type the executor does not verify, so that the operator
/// knows what they gave; unknown types by their OID (digits and dots only).
fn key_type(algorithm: ObjectIdentifier, parameters: Option<ObjectIdentifier>) -> String {
    match (algorithm, parameters) {
        (EC_PUBLIC_KEY, Some(P384)) => "an ECDSA P-384 key".into(),
        (EC_PUBLIC_KEY, Some(P521)) => "an ECDSA P-521 key".into(),
        (EC_PUBLIC_KEY, Some(SECP256K1)) => "an ECDSA secp256k1 key".into(),
        (EC_PUBLIC_KEY, Some(curve)) => format!("an EC key on curve {curve}"),
        (EC_PUBLIC_KEY, None) => "an EC key with no named curve".into(),
        (RSA | RSA_PSS, _) => "an RSA key".into(),
        (DSA, _) => "a DSA key".into(),
        (ED25519, _) => "an Ed25519 key".into(),
        (ED448, _) => "an Ed448 key".into(),
        (other, _) => format!("a key of algorithm {other}"),
    }
}

/// The signature in a signature file: base64 (standard alphabet) of an
/// ASN.1 DER ECDSA signature. Whitespace is ignored, so a trailing newline
/// or `base64`'s line wrapping does no harm.
fn signature(text: &[u8]) -> Result<Signature, SignatureProblem> {
    let compact: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|_| SignatureProblem::NotBase64)?;
    Signature::from_der(&der).map_err(|_| SignatureProblem::NotDer)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    use p256::pkcs8::{EncodePublicKey, LineEnding};

    fn signing_key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32].into()).unwrap()
    }

    fn pem_of(key: &SigningKey) -> String {
        key.verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap()
    }

    fn base64_of(signature: &Signature) -> String {
        base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes())
    }

    #[test]
    fn a_cosign_pub_key_is_read_and_text_around_it_is_ignored() {
        let key = signing_key(7);
        let pem = pem_of(&key);
        assert_eq!(public_key(pem.as_bytes()).unwrap(), *key.verifying_key());
        let noisy = format!("a note before the key\r\n{pem}\n\n");
        assert_eq!(public_key(noisy.as_bytes()).unwrap(), *key.verifying_key());
    }

    #[test]
    fn what_is_not_a_p256_public_key_is_named_for_what_it_is() {
        let cases: &[(&str, KeyProblem)] = &[
            ("ssh-ed25519 AAAAC3Nza", KeyProblem::NotPem),
            (
                "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n",
                KeyProblem::PrivateKey,
            ),
            (
                "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
                KeyProblem::PrivateKey,
            ),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                KeyProblem::Certificate,
            ),
            (
                "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n",
                KeyProblem::OtherBlock,
            ),
            (
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                KeyProblem::NotSpki,
            ),
            // `openssl genpkey -algorithm ed25519 | openssl pkey -pubout`.
            (
                "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAuJR0y7YswrMrkszh+0kSt77vmq3sRKCQwOvnvyWqLOc=\n-----END PUBLIC KEY-----\n",
                KeyProblem::Unsupported {
                    found: "an Ed25519 key".into(),
                },
            ),
            // `openssl ecparam -name secp384r1 -genkey -noout | openssl ec -pubout`.
            (
                "-----BEGIN PUBLIC KEY-----\n\
                 MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEtOTjrmdaSYvRtw0oQt3ir/3+lxm65sb0\n\
                 6PAt3efcI27ojwt9ErRoLcH8nwpvepaJ7htWlZS1WKGagzdLTQU4tlSleESJKhzE\n\
                 5N9WjJLv8UCKQEw2/Vf8eFnR+l80Gm04\n\
                 -----END PUBLIC KEY-----\n",
                KeyProblem::Unsupported {
                    found: "an ECDSA P-384 key".into(),
                },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(
                public_key(text.as_bytes()).err().as_ref(),
                Some(expected),
                "{text}"
            );
        }
    }

    #[test]
    fn a_signature_with_a_high_s_verifies_as_openssl_and_go_accept_it() {
        // openssl does not normalise s, so half of its signatures have the
        // high one; both forms are the same signature.
        let key = signing_key(7);
        let digest = [42u8; 32];
        let low: Signature = key.sign_prehash(&digest).unwrap();
        let (r, s) = low.split_scalars();
        let flipped = Signature::from_scalars(r, -*s).unwrap();
        for sig in [low, flipped] {
            let read = signature(format!(" {}\n", base64_of(&sig)).as_bytes()).unwrap();
            key.verifying_key().verify_prehash(&digest, &read).unwrap();
        }
    }

    #[test]
    fn a_signature_file_that_is_not_base64_der_is_named_so() {
        assert_eq!(
            signature(b"not base64!").err(),
            Some(SignatureProblem::NotBase64)
        );
        assert_eq!(
            signature(b"aGVsbG8gd29ybGQ=\n").err(),
            Some(SignatureProblem::NotDer)
        );
        // The raw 64-byte form (r || s) is not what cosign writes.
        let raw: Signature = signing_key(7).sign(b"x");
        let raw = base64::engine::general_purpose::STANDARD.encode(raw.to_bytes());
        assert_eq!(
            signature(raw.as_bytes()).err(),
            Some(SignatureProblem::NotDer)
        );
    }
}
