//! The AWS shared-credentials file format (`~/.aws/credentials`), for the root key file
//! `ember serve` writes and the profiles the CLI reads.
//!
//! ```ini
//! [default]
//! aws_access_key_id = AKIA...
//! aws_secret_access_key = ...
//! ```

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// One key pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPair {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// The key pair of `profile` in a credentials file's text, if it has both keys.
pub fn parse_profile(text: &str, profile: &str) -> Option<KeyPair> {
    let mut in_profile = false;
    let (mut id, mut secret) = (None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let section = section.trim();
            in_profile = section == profile || section.strip_prefix("profile ") == Some(profile);
            continue;
        }
        if !in_profile {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            match key.trim() {
                "aws_access_key_id" => id = Some(value.trim().to_owned()),
                "aws_secret_access_key" => secret = Some(value.trim().to_owned()),
                _ => {}
            }
        }
    }
    Some(KeyPair {
        access_key_id: id?,
        secret_access_key: secret?,
    })
}

/// Read `profile` from the credentials file at `path`.
pub fn read_profile(path: &Path, profile: &str) -> Result<Option<KeyPair>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(parse_profile(&text, profile)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Write a credentials file holding one `[default]` profile, readable by the owner only.
pub fn write_default(path: &Path, key: &KeyPair) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    write!(
        file,
        "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        key.access_key_id, key.secret_access_key
    )?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles() {
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key=B\n\n\
                    [profile dev]\n# comment\naws_access_key_id = C\naws_secret_access_key = D\n\
                    [broken]\naws_access_key_id = E\n";
        let pair = |a: &str, b: &str| KeyPair {
            access_key_id: a.into(),
            secret_access_key: b.into(),
        };
        assert_eq!(parse_profile(text, "default"), Some(pair("A", "B")));
        assert_eq!(parse_profile(text, "dev"), Some(pair("C", "D")));
        assert_eq!(parse_profile(text, "broken"), None);
        assert_eq!(parse_profile(text, "missing"), None);
    }

    #[test]
    fn written_file_is_private_and_readable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        let key = KeyPair {
            access_key_id: "AKIAX".into(),
            secret_access_key: "s/+".into(),
        };
        write_default(&path, &key).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(read_profile(&path, "default").unwrap(), Some(key));
    }
}
