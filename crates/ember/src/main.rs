//! `ember`: the one binary. `ember serve` runs the platform; every other subcommand is a
//! client of a running server over its HTTP API (SigV4-signed, like any AWS SDK).
//!
//! # Layout
//! - `config`: `serve`'s settings (flags, environment, TOML file, defaults).
//! - `serve`: wiring of the store, the code store and the frontend; root bootstrap.
//! - `client`: endpoint and credential discovery, signing, AWS error decoding.
//! - `credentials`: the AWS shared-credentials file format.
//! - `deploy`: zipping a directory into a function.

mod client;
mod config;
mod credentials;
mod deploy;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use http::Method;
use serde_json::{Value, json};

use client::{ApiFailure, Client};

#[derive(Parser)]
#[command(
    name = "ember",
    version,
    about = "Ember: run functions in response to events, behind the AWS Lambda API",
    long_about = "Ember runs users' functions (Python, Node.js, or any `bootstrap` executable) \
                  in isolated sandboxes. `ember serve` runs the server; it speaks the AWS Lambda \
                  API, so boto3, the aws CLI and every AWS SDK work against it with \
                  AWS_ENDPOINT_URL=http://127.0.0.1:4566. The other subcommands are clients of \
                  a running server."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options every client subcommand shares.
#[derive(clap::Args, Debug, Clone)]
struct ClientArgs {
    /// Server URL [default: $AWS_ENDPOINT_URL, else http://127.0.0.1:4566]
    #[arg(long, global = true)]
    endpoint: Option<String>,
    /// Data directory whose `credentials` file is used when no AWS credentials are set in
    /// the environment [default: $EMBER_DATA_DIR, else ./.ember]
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Ember server (defaults: data in ./.ember, listening on 127.0.0.1:4566)
    Serve(config::ServeArgs),
    /// Zip a directory and create the function, or update its code and configuration
    Deploy {
        #[command(flatten)]
        args: deploy::DeployArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Invoke a function synchronously and print its result (and, with --log, its log tail)
    Invoke {
        /// Function name or ARN
        name: String,
        /// Event payload (JSON)
        #[arg(long, default_value = "{}")]
        payload: String,
        /// Also print the last 4 KB of the invocation's log to stderr
        #[arg(long)]
        log: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List, show and delete functions
    Functions {
        #[command(subcommand)]
        command: FunctionsCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show which sandbox protections this host enforces and which runtimes it has
    Doctor {
        /// Data directory whose sandboxes directory is checked [default: ./.ember]
        #[arg(long, env = "EMBER_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Show the warming pool and the functions' sandboxes, or resize the pool (root only)
    Pool {
        #[command(subcommand)]
        command: Option<PoolCommand>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Manage accounts (root account only)
    Accounts {
        #[command(subcommand)]
        command: AccountsCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
enum FunctionsCommand {
    /// List the account's functions
    Ls,
    /// Show a function's configuration and code location (JSON)
    Get { name: String },
    /// Delete a function
    Rm { name: String },
}

#[derive(Subcommand)]
enum PoolCommand {
    /// Set how many booted sandboxes to keep for a runtime (e.g. raise it for peak hours)
    Set { runtime: String, size: u32 },
}

#[derive(Subcommand)]
enum AccountsCommand {
    /// Create an account; prints its id and access key as JSON
    Create { name: String },
    /// List accounts
    Ls,
}

fn main() -> ExitCode {
    // The sandbox init helper is this same binary, re-executed: it must take over before
    // any thread starts.
    ember_sandbox::init_if_requested();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match e.downcast_ref::<ApiFailure>() {
                Some(failure) => eprintln!("error: {failure}"),
                None => eprintln!("error: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let config = args.resolve()?;
            init_logging();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(serve::run(config))
        }
        Command::Deploy { args, client } => {
            let client = connect(client)?;
            print_json(&deploy::run(&client, args)?);
            Ok(())
        }
        Command::Functions { command, client } => functions(&connect(client)?, command),
        Command::Invoke {
            name,
            payload,
            log,
            client,
        } => invoke(&connect(client)?, &name, &payload, log),
        Command::Doctor { data_dir } => {
            doctor(&data_dir.unwrap_or_else(|| PathBuf::from(config::DEFAULT_DATA_DIR)));
            Ok(())
        }
        Command::Accounts { command, client } => accounts(&connect(client)?, command),
        Command::Pool { command, client } => pool(&connect(client)?, command),
    }
}

/// Invoke and print the result; a function error is printed too, and makes the exit
/// status 1.
fn invoke(client: &Client, name: &str, payload: &str, log: bool) -> Result<()> {
    serde_json::from_str::<Value>(payload)
        .map_err(|e| anyhow::anyhow!("--payload is not valid JSON: {e}"))?;
    let path = format!("/2015-03-31/functions/{}/invocations", deploy::encode(name));
    let headers = [("x-amz-log-type", if log { "Tail" } else { "None" })];
    let reply = client.send_with(
        "lambda",
        Method::POST,
        &path,
        payload.as_bytes().to_vec(),
        &headers,
    )?;
    if !(200..300).contains(&reply.status) {
        return Err(reply.into_failure().into());
    }
    if let Some(tail) = &reply.log_result {
        eprint!("{tail}");
        if let Some(placement) = &reply.placement {
            eprintln!("placement: {placement}");
        }
    }
    println!("{}", String::from_utf8_lossy(&reply.body));
    if reply.function_error.is_some() {
        anyhow::bail!("the function failed (see its error above)");
    }
    Ok(())
}

fn doctor(data_dir: &std::path::Path) {
    let report = serve::sandbox_environment(data_dir).report();
    println!("Sandbox isolation on this host:\n{report}");
    let runtimes = ember_worker::runtimes::HostRuntimes::detect();
    println!("\nRuntimes:");
    for name in runtimes.names() {
        if let Some(runtime) = runtimes.get(name) {
            println!("  {name:<16} {}", runtime.argv.join(" "));
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn connect(args: ClientArgs) -> Result<Client> {
    Client::from_env(args.endpoint, args.data_dir)
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

fn functions(client: &Client, command: FunctionsCommand) -> Result<()> {
    match command {
        FunctionsCommand::Ls => {
            let mut marker: Option<String> = None;
            println!(
                "{:<40} {:<16} {:>7} {:>8}  LAST MODIFIED",
                "NAME", "RUNTIME", "MEMORY", "TIMEOUT"
            );
            loop {
                let mut path = "/2015-03-31/functions?MaxItems=1000".to_owned();
                if let Some(m) = &marker {
                    path.push_str(&format!("&Marker={}", deploy::encode(m)));
                }
                let page = client.json("lambda", Method::GET, &path, None)?;
                for f in page["Functions"].as_array().into_iter().flatten() {
                    println!(
                        "{:<40} {:<16} {:>7} {:>8}  {}",
                        f["FunctionName"].as_str().unwrap_or(""),
                        f["Runtime"].as_str().unwrap_or("-"),
                        f["MemorySize"],
                        f["Timeout"],
                        f["LastModified"].as_str().unwrap_or("")
                    );
                }
                marker = page["NextMarker"].as_str().map(str::to_owned);
                if marker.is_none() {
                    return Ok(());
                }
            }
        }
        FunctionsCommand::Get { name } => {
            let path = format!("/2015-03-31/functions/{}", deploy::encode(&name));
            print_json(&client.json("lambda", Method::GET, &path, None)?);
            Ok(())
        }
        FunctionsCommand::Rm { name } => {
            let path = format!("/2015-03-31/functions/{}", deploy::encode(&name));
            client.json("lambda", Method::DELETE, &path, None)?;
            eprintln!("deleted {name}");
            Ok(())
        }
    }
}

fn pool(client: &Client, command: Option<PoolCommand>) -> Result<()> {
    let status = match command {
        None => client.json("ember", Method::GET, "/ember/v1/pool", None)?,
        Some(PoolCommand::Set { runtime, size }) => client.json(
            "ember",
            Method::PUT,
            &format!("/ember/v1/pool/{}", deploy::encode(&runtime)),
            Some(&json!({ "Size": size })),
        )?,
    };
    println!("{:<16} {:>7} {:>7}", "RUNTIME", "POOLED", "TARGET");
    for r in status["Runtimes"].as_array().into_iter().flatten() {
        println!(
            "{:<16} {:>7} {:>7}",
            r["Runtime"].as_str().unwrap_or(""),
            r["Pooled"],
            r["Target"]
        );
    }
    println!(
        "\n{:<14} {:<40} {:>5} {:>5}",
        "ACCOUNT", "FUNCTION", "IDLE", "BUSY"
    );
    for f in status["Functions"].as_array().into_iter().flatten() {
        println!(
            "{:<14} {:<40} {:>5} {:>5}",
            f["AccountId"].as_str().unwrap_or(""),
            f["FunctionName"].as_str().unwrap_or(""),
            f["Idle"],
            f["Busy"]
        );
    }
    let mib = |v: &Value| v.as_u64().unwrap_or(0) as f64 / (1 << 20) as f64;
    println!(
        "\nmemory in use by idle and pooled sandboxes: {:.1} MiB",
        mib(&status["MemoryBytes"])
    );
    println!(
        "memory budget: {:.0} MiB of {:.0} MiB reserved (the memory limits of all sandboxes)",
        mib(&status["MemoryBudget"]["Reserved"]),
        mib(&status["MemoryBudget"]["Limit"])
    );
    Ok(())
}

fn accounts(client: &Client, command: AccountsCommand) -> Result<()> {
    let answer = match command {
        AccountsCommand::Create { name } => client.json(
            "ember",
            Method::POST,
            "/ember/v1/accounts",
            Some(&json!({ "Name": name })),
        )?,
        AccountsCommand::Ls => client.json("ember", Method::GET, "/ember/v1/accounts", None)?,
    };
    print_json(&answer);
    Ok(())
}
