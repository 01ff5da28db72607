//! `ember deploy DIR`: zip a directory and create or update the function from it.
//!
//! The zip is deterministic (sorted entries, fixed timestamps), so deploying an
//! unchanged directory yields the same `CodeSha256`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::Engine;
use clap::Args;
use http::Method;
use serde_json::{Value, json};

use crate::client::{ApiFailure, Client};

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Directory whose contents become the function's code (/var/task)
    pub dir: PathBuf,
    /// Function name
    #[arg(long)]
    pub name: String,
    /// Runtime, e.g. python3.11, nodejs20.x, provided.al2023
    #[arg(long)]
    pub runtime: String,
    /// Handler, e.g. app.handler
    #[arg(long)]
    pub handler: String,
    /// Memory in MiB (128-10240)
    #[arg(long)]
    pub memory: Option<u32>,
    /// Timeout in seconds (1-900)
    #[arg(long)]
    pub timeout: Option<u32>,
    /// Environment variable KEY=VALUE (repeatable); replaces the function's variables
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Description
    #[arg(long)]
    pub description: Option<String>,
    /// Execution role ARN, stored as given
    #[arg(long)]
    pub role: Option<String>,
}

/// Packages over this size show a progress bar while being zipped.
const PROGRESS_THRESHOLD: u64 = 4 * 1024 * 1024;

pub fn run(client: &Client, args: DeployArgs) -> Result<Value> {
    let environment = parse_env(&args.env)?;
    let zip = zip_dir(&args.dir)?;
    let zip_b64 = base64::engine::general_purpose::STANDARD.encode(&zip);
    let path = format!("/2015-03-31/functions/{}", encode(&args.name));
    let mut config = json!({
        "Runtime": args.runtime,
        "Handler": args.handler,
        "Environment": { "Variables": environment },
    });
    for (key, value) in [
        ("MemorySize", args.memory.map(Value::from)),
        ("Timeout", args.timeout.map(Value::from)),
        ("Description", args.description.map(Value::from)),
        ("Role", args.role.map(Value::from)),
    ] {
        if let Some(value) = value {
            config[key] = value;
        }
    }
    match client.json(
        "lambda",
        Method::GET,
        &format!("{path}/configuration"),
        None,
    ) {
        Ok(_) => {
            client.json(
                "lambda",
                Method::PUT,
                &format!("{path}/code"),
                Some(&json!({ "ZipFile": zip_b64 })),
            )?;
            client.json(
                "lambda",
                Method::PUT,
                &format!("{path}/configuration"),
                Some(&config),
            )
        }
        Err(e) if is_not_found(&e) => {
            config["FunctionName"] = json!(args.name);
            config["Code"] = json!({ "ZipFile": zip_b64 });
            client.json(
                "lambda",
                Method::POST,
                "/2015-03-31/functions",
                Some(&config),
            )
        }
        Err(e) => Err(e),
    }
}

fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ApiFailure>()
        .is_some_and(|f| f.code == "ResourceNotFoundException")
}

/// Percent-encode one path segment.
pub fn encode(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn parse_env(pairs: &[String]) -> Result<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => bail!("--env expects KEY=VALUE, got {pair:?}"),
        })
        .collect()
}

/// Zip `dir` deterministically: entries sorted, timestamps fixed, unix modes kept,
/// symlinks stored as links.
pub fn zip_dir(dir: &Path) -> Result<Vec<u8>> {
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let entries: Vec<walkdir::DirEntry> = walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .min_depth(1)
        .into_iter()
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {}", dir.display()))?;
    let total: u64 = entries
        .iter()
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();
    let progress = if total > PROGRESS_THRESHOLD {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    progress.set_style(
        indicatif::ProgressStyle::with_template("zipping {bar:40} {bytes}/{total_bytes}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );

    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let fixed_time = zip::DateTime::default();
    for entry in entries {
        let relative = entry.path().strip_prefix(dir)?;
        let name = relative
            .to_str()
            .with_context(|| format!("{} is not valid UTF-8", relative.display()))?;
        let metadata = entry.path().symlink_metadata()?;
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o777;
        let options = zip::write::SimpleFileOptions::default()
            .last_modified_time(fixed_time)
            .unix_permissions(mode);
        let file_type = entry.file_type();
        if file_type.is_symlink() {
            let target = std::fs::read_link(entry.path())?;
            let target = target
                .to_str()
                .with_context(|| format!("link target of {name} is not valid UTF-8"))?;
            zip.add_symlink(name, target, options)?;
        } else if file_type.is_dir() {
            zip.add_directory(format!("{name}/"), options)?;
        } else {
            let options = options.compression_method(zip::CompressionMethod::Deflated);
            zip.start_file(name, options)?;
            let mut file = std::fs::File::open(entry.path())
                .with_context(|| format!("opening {}", entry.path().display()))?;
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                zip.write_all(&buf[..n])?;
                progress.inc(n as u64);
            }
        }
    }
    progress.finish_and_clear();
    Ok(zip.finish()?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zips_are_deterministic_and_keep_modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("pkg")).unwrap();
        std::fs::write(dir.path().join("app.py"), "def handler(e, c): return e\n").unwrap();
        std::fs::write(dir.path().join("pkg/mod.py"), "x = 1\n").unwrap();
        let boot = dir.path().join("bootstrap");
        std::fs::write(&boot, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&boot, std::fs::Permissions::from_mode(0o755)).unwrap();
        let a = zip_dir(dir.path()).unwrap();
        let b = zip_dir(dir.path()).unwrap();
        assert_eq!(a, b);
        let info =
            ember_store::package::inspect(&a, &ember_store::package::Limits::default()).unwrap();
        assert_eq!(info.entries, 4);
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(a)).unwrap();
        let boot = archive.by_name("bootstrap").unwrap();
        assert_eq!(boot.unix_mode().unwrap() & 0o777, 0o755);
    }

    #[test]
    fn env_pairs() {
        assert_eq!(
            parse_env(&["A=1".into(), "B=x=y".into()]).unwrap(),
            BTreeMap::from([("A".into(), "1".into()), ("B".into(), "x=y".into())])
        );
        assert!(parse_env(&["novalue".into()]).is_err());
        assert!(parse_env(&["=1".into()]).is_err());
    }
}
