//! `ember serve`'s settings, resolved once: command-line flag, else environment variable,
//! else the TOML config file, else the built-in default. Unknown keys in the file are
//! errors, so a typo is caught at start-up rather than silently ignored.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Deserialize;

pub const DEFAULT_DATA_DIR: &str = ".ember";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4566";
pub const DEFAULT_REGION: &str = "us-east-1";

/// Flags of `ember serve` (each also settable by environment variable).
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Directory holding the database, code packages and the root credentials file
    /// [default: ./.ember]
    #[arg(long, env = "EMBER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port [default: 127.0.0.1:4566]
    #[arg(long, env = "EMBER_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Region used in ARNs [default: us-east-1]
    #[arg(long, env = "EMBER_REGION")]
    pub region: Option<String>,
    /// TOML config file (keys: data_dir, listen, region, [code] max_unzipped_bytes,
    /// max_entries, [limits] account_concurrency, [pool] "<runtime>" = <size>,
    /// [sandboxes] idle_timeout_secs, memory_budget_mib, health_check_interval_ms,
    /// [events] async_retry_delay_secs)
    #[arg(long, env = "EMBER_CONFIG")]
    pub config: Option<PathBuf>,
}

/// The config file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    region: Option<String>,
    #[serde(default)]
    code: CodeConfig,
    #[serde(default)]
    limits: LimitsConfig,
    /// Warming pool size per runtime, e.g. `"python3.11" = 4`.
    pool: Option<BTreeMap<String, usize>>,
    #[serde(default)]
    sandboxes: SandboxesConfig,
    #[serde(default)]
    events: EventsConfig,
}

/// `[events]`: the event pipeline.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsConfig {
    /// Seconds before the first retry of a failed asynchronous invocation; the second
    /// waits twice as long (default 60, as Lambda).
    async_retry_delay_secs: Option<u64>,
}

/// `[limits]`: concurrency.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsConfig {
    /// Concurrent executions per account (default 1000).
    account_concurrency: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SandboxesConfig {
    /// Idle sandboxes are torn down after this many seconds (default 600).
    idle_timeout_secs: Option<u64>,
    /// Memory for all sandboxes together, in MiB (default: 3/4 of the machine's RAM).
    memory_budget_mib: Option<u64>,
    /// Health checks of idle and pooled sandboxes this often, in milliseconds (default:
    /// half the idle timeout, between 200 ms and 5 s).
    health_check_interval_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeConfig {
    max_unzipped_bytes: Option<u64>,
    max_entries: Option<usize>,
}

/// Fully resolved settings.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub frontend: ember_api::Config,
    /// Warming pool targets per runtime; `None`: the defaults for the host's runtimes.
    pub pool: Option<BTreeMap<String, usize>>,
    pub idle_timeout: std::time::Duration,
    /// How often idle and pooled sandboxes are checked (keep-alive, liveness, a
    /// responsiveness probe).
    pub health_check_interval: std::time::Duration,
    pub memory_budget_bytes: u64,
    pub async_retry_delay: std::time::Duration,
}

impl ServeArgs {
    pub fn resolve(self) -> Result<ServeConfig> {
        let file = match &self.config {
            Some(path) => load(path)?,
            None => FileConfig::default(),
        };
        let region = self
            .region
            .or(file.region)
            .unwrap_or_else(|| DEFAULT_REGION.to_owned());
        if region.is_empty()
            || !region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            bail!("invalid region {region:?}: use lowercase letters, digits and '-'");
        }
        let mut code_limits = ember_store::package::Limits::default();
        if let Some(n) = file.code.max_unzipped_bytes {
            code_limits.max_unzipped_bytes = n;
        }
        if let Some(n) = file.code.max_entries {
            code_limits.max_entries = n;
        }
        let account_concurrency_limit = match file.limits.account_concurrency {
            Some(0) => bail!("[limits] account_concurrency must be at least 1"),
            Some(n) => n,
            None => ember_worker::limits::DEFAULT_ACCOUNT_LIMIT,
        };
        let idle_timeout =
            std::time::Duration::from_secs(file.sandboxes.idle_timeout_secs.unwrap_or(600));
        let health_check_interval = match file.sandboxes.health_check_interval_ms {
            Some(0) => bail!("[sandboxes] health_check_interval_ms must be at least 1"),
            Some(ms) => std::time::Duration::from_millis(ms),
            None => (idle_timeout / 2).clamp(
                std::time::Duration::from_millis(200),
                std::time::Duration::from_secs(5),
            ),
        };
        Ok(ServeConfig {
            data_dir: self
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            listen: match self.listen.or(file.listen) {
                Some(addr) => addr,
                None => DEFAULT_LISTEN.parse()?,
            },
            frontend: ember_api::Config {
                region,
                code_limits,
                account_concurrency_limit,
            },
            pool: file.pool,
            idle_timeout,
            health_check_interval,
            memory_budget_bytes: match file.sandboxes.memory_budget_mib {
                Some(mib) => mib << 20,
                None => default_memory_budget(),
            },
            async_retry_delay: std::time::Duration::from_secs(
                file.events.async_retry_delay_secs.unwrap_or(60).max(1),
            ),
        })
    }
}

/// Three quarters of the machine's memory (`MemTotal`), or 2 GiB if it cannot be read.
fn default_memory_budget() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(2 << 30, |kib| kib * 1024 / 4 * 3)
}

fn load(path: &Path) -> Result<FileConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_flag_then_file_then_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ember.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9999\"\nregion = \"eu-west-1\"\n[code]\nmax_entries = 7\n",
        )
        .unwrap();
        let args = ServeArgs {
            region: Some("ap-south-1".into()),
            config: Some(path),
            ..Default::default()
        };
        let c = args.resolve().unwrap();
        assert_eq!(c.frontend.region, "ap-south-1");
        assert_eq!(c.listen, "127.0.0.1:9999".parse().unwrap());
        assert_eq!(c.data_dir, PathBuf::from(".ember"));
        assert_eq!(c.frontend.code_limits.max_entries, 7);
    }

    /// Settings from a config file holding `text` (and no flags).
    fn resolve(text: &str) -> Result<ServeConfig> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ember.toml");
        std::fs::write(&path, text).unwrap();
        ServeArgs {
            config: Some(path),
            ..Default::default()
        }
        .resolve()
    }

    #[test]
    fn health_check_interval_follows_the_idle_timeout_unless_set() {
        let ms = |n| std::time::Duration::from_millis(n);
        assert_eq!(resolve("").unwrap().health_check_interval, ms(5000));
        let short = resolve("[sandboxes]\nidle_timeout_secs = 1\n").unwrap();
        assert_eq!(short.health_check_interval, ms(500));
        let set = resolve("[sandboxes]\nhealth_check_interval_ms = 50\n").unwrap();
        assert_eq!(set.health_check_interval, ms(50));
        assert!(resolve("[sandboxes]\nhealth_check_interval_ms = 0\n").is_err());
    }

    #[test]
    fn account_concurrency_limit() {
        assert_eq!(
            resolve("").unwrap().frontend.account_concurrency_limit,
            1000
        );
        assert_eq!(
            resolve("[limits]\naccount_concurrency = 7\n")
                .unwrap()
                .frontend
                .account_concurrency_limit,
            7
        );
        assert!(resolve("[limits]\naccount_concurrency = 0\n").is_err());
        assert!(resolve("[limits]\naccount_concurrency = -1\n").is_err());
        assert!(resolve("[limits]\nconcurrency = 5\n").is_err());
    }

    #[test]
    fn unknown_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ember.toml");
        std::fs::write(&path, "lisen = \"127.0.0.1:1\"\n").unwrap();
        let args = ServeArgs {
            config: Some(path),
            ..Default::default()
        };
        let err = format!("{:#}", args.resolve().unwrap_err());
        assert!(err.contains("lisen"), "{err}");
    }
}
