//! Ed25519 keys on disk: private keys as PKCS#8 PEM, public keys as SPKI PEM.
//!
//! These are the formats `openssl genpkey -algorithm ed25519` and
//! `openssl pkey -pubout` write, so keys made by either tool work here.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};

/// A key file that could not be read, parsed or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file's contents are not a key of the expected kind.
    #[error("{path}: not an Ed25519 {what} ({reason})")]
    Format {
        /// The file.
        path: PathBuf,
        /// "PKCS#8 private key" or "SPKI public key".
        what: &'static str,
        /// The parser's message.
        reason: String,
    },
    /// The path names a directory or something else that is not a file.
    #[error("{path}: not a file; give the path of the key file itself (NAME.key.pem)")]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// A private key file others may read.
    #[error("{path}: private key readable by others (mode {mode:o}); run `chmod 600 {path}`")]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// Refuses a private key file that group or others may access: a key
/// that may have been read can sign licenses or consumption records.
pub fn check_private_file(path: &Path) -> Result<(), KeyError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = fs::metadata(path).map_err(|source| KeyError::Io {
            path: path.to_owned(),
            source,
        })?;
        if !meta.is_file() {
            return Err(KeyError::NotAFile {
                path: path.to_owned(),
            });
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::TooOpen {
                path: path.to_owned(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Makes a new random signing key from the operating system's generator.
pub fn generate() -> SigningKey {
    SigningKey::generate(&mut rand_core::OsRng)
}

/// The PKCS#8 PEM text of a private key.
pub fn private_pem(key: &SigningKey) -> String {
    // Encoding a 32-byte key into PEM cannot fail.
    key.to_pkcs8_pem(LineEnding::LF)
        .map(|z| z.to_string())
        .unwrap_or_default()
}

/// The SPKI PEM text of a public key.
pub fn public_pem(key: &VerifyingKey) -> String {
    key.to_public_key_pem(LineEnding::LF).unwrap_or_default()
}

/// Parses a SPKI PEM public key.
pub fn parse_public_pem(pem: &str) -> Result<VerifyingKey, String> {
    VerifyingKey::from_public_key_pem(pem.trim()).map_err(|e| e.to_string())
}

/// Reads a PKCS#8 PEM private key file.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    let text = read(path)?;
    SigningKey::from_pkcs8_pem(text.trim()).map_err(|e| KeyError::Format {
        path: path.to_owned(),
        what: "PKCS#8 private key",
        reason: e.to_string(),
    })
}

/// Reads a SPKI PEM public key file.
pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    let text = read(path)?;
    parse_public_pem(&text).map_err(|reason| KeyError::Format {
        path: path.to_owned(),
        what: "SPKI public key",
        reason,
    })
}

/// Writes `NAME.key.pem` (mode 0600) and `NAME.pub.pem` into `dir`; refuses to overwrite.
pub fn write_keypair(
    dir: &Path,
    name: &str,
    key: &SigningKey,
) -> Result<(PathBuf, PathBuf), KeyError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| KeyError::Io { path, source }
    };
    fs::create_dir_all(dir).map_err(io(dir))?;
    let private = dir.join(format!("{name}.key.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    write_new(&private, private_pem(key).as_bytes(), 0o600).map_err(io(&private))?;
    write_new(&public, public_pem(&key.verifying_key()).as_bytes(), 0o644).map_err(io(&public))?;
    Ok((private, public))
}

/// Loads the signing key at `path`, creating it (mode 0600, public half beside it) if absent.
pub fn load_or_create_signing_key(path: &Path) -> Result<(SigningKey, bool), KeyError> {
    if path.exists() {
        // Design: the daemon's own key is checked; `issue` and `policy sign`
        // take the operator's word (the development key in the repository
        // cannot carry a file mode).
        check_private_file(path)?;
        return Ok((load_signing_key(path)?, false));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let file = path
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or("checkpoint.key.pem");
    let name = file.strip_suffix(".key.pem").unwrap_or(file);
    let key = generate();
    let io = |p: &Path| {
        let p = p.to_owned();
        move |source| KeyError::Io { path: p, source }
    };
    fs::create_dir_all(dir).map_err(io(dir))?;
    write_new(path, private_pem(&key).as_bytes(), 0o600).map_err(io(path))?;
    let public = dir.join(format!("{name}.pub.pem"));
    if !public.exists() {
        write_new(&public, public_pem(&key.verifying_key()).as_bytes(), 0o644)
            .map_err(io(&public))?;
    }
    Ok((key, true))
}

fn read(path: &Path) -> Result<String, KeyError> {
    fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.to_owned(),
        source,
    })
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keypair_round_trips_through_pem_files() {
        let dir = tempfile::tempdir().unwrap();
        let key = generate();
        let (private, public) = write_keypair(dir.path(), "issuer", &key).unwrap();
        assert_eq!(
            load_signing_key(&private).unwrap().to_bytes(),
            key.to_bytes()
        );
        assert_eq!(load_verifying_key(&public).unwrap(), key.verifying_key());
        assert!(
            fs::read_to_string(&private)
                .unwrap()
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );
        assert!(
            fs::read_to_string(&public)
                .unwrap()
                .starts_with("-----BEGIN PUBLIC KEY-----")
        );
        // Never overwrite an existing key.
        assert!(write_keypair(dir.path(), "issuer", &key).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn the_daemon_refuses_its_key_when_others_may_read_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (private, _) = write_keypair(dir.path(), "issuer", &generate()).unwrap();
        for mode in [0o640, 0o604, 0o644] {
            fs::set_permissions(&private, fs::Permissions::from_mode(mode)).unwrap();
            let e = load_or_create_signing_key(&private)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("readable by others") && e.contains("chmod 600"),
                "{e}"
            );
        }
        fs::set_permissions(&private, fs::Permissions::from_mode(0o400)).unwrap();
        assert!(load_or_create_signing_key(&private).is_ok());
        // A directory is named as what it is, not as a file to chmod.
        let e = check_private_file(dir.path()).unwrap_err().to_string();
        assert!(e.contains("not a file") && !e.contains("chmod"), "{e}");
    }

    #[test]
    fn wrong_kind_of_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.pem");
        fs::write(&p, "not a key").unwrap();
        let e = load_verifying_key(&p).unwrap_err().to_string();
        assert!(e.contains("x.pem") && e.contains("SPKI"), "{e}");
    }
}
