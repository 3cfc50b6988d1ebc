//! Seed 004's harness: `master-svr`, `svr` and `clt`, with that seed's
//! names, flags and exit codes, as thin front-ends of `shardscope`: each
//! turns the seed's flags into a `shardscope` command line and runs it.
//!
//! - `master-svr -p MASTER_PORT`: `serve` on MASTER_PORT with no nodes of
//!   its own; servers join through its registry and it moves keys to them.
//! - `svr -p PORT -m MASTER_PORT`: a storage `node` on PORT that registers
//!   with the registry of the master on MASTER_PORT (its address and node
//!   token are in the master's `registry/` directory).
//! - `clt -p PORT -o GET|PUT -k KEY [-v VALUE] -m MASTER_PORT -d 0|1`: `get`
//!   or `put` through the master (`-d 0`) or straight to the server on PORT
//!   (`-d 1`); exit 0 done, 1 failed, 2 a GET of a key that is not there.
//!
//! The three share a directory, `$SHARDSCOPE_SEED004_DIR` (default
//! `./seed004`): the master keeps its data in `master-PORT/`, each server
//! in `svr-PORT/`, so run them from one place (the seed runs every process
//! locally, from its build directory).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};

use crate::cli::{self, Cli};
use crate::server::{REGISTRY_ADDRESS_FILE, REGISTRY_DIR};
use crate::token::NODE_TOKEN_FILE;

/// The directory the three share.
pub const DIR_ENV: &str = "SHARDSCOPE_SEED004_DIR";

/// How long `svr` waits for its master's registry to appear.
const MASTER_WAIT: Duration = Duration::from_secs(30);

fn shared_dir() -> PathBuf {
    std::env::var_os(DIR_ENV).filter(|d| !d.is_empty()).map_or_else(|| PathBuf::from("./seed004"), PathBuf::from)
}

fn master_dir(port: u16) -> PathBuf {
    shared_dir().join(format!("master-{port}"))
}

#[derive(Parser, Debug)]
#[command(name = "master-svr", about = "Seed 004's master: shardscope serve with servers joining through it")]
struct MasterArgs {
    /// Port for clients and for servers joining.
    #[arg(short = 'p')]
    port: u16,
}

#[derive(Parser, Debug)]
#[command(name = "svr", about = "Seed 004's key-value server: a shardscope node joining its master")]
struct ServerArgs {
    /// Port the server listens on (ZeroMQ, the seeds' JSON).
    #[arg(short = 'p')]
    port: u16,
    /// The master's port.
    #[arg(short = 'm')]
    master: u16,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
#[value(rename_all = "UPPER")]
enum Operation {
    Get,
    Put,
}

#[derive(Parser, Debug)]
#[command(name = "clt", about = "Seed 004's client: one GET or PUT (exit 0 ok, 1 failed, 2 no such key)")]
struct ClientArgs {
    /// The server's port, for -d 1.
    #[arg(short = 'p')]
    port: Option<u16>,
    #[arg(short = 'o', value_enum, ignore_case = true)]
    operation: Operation,
    #[arg(short = 'k')]
    key: String,
    /// The value, for PUT.
    #[arg(short = 'v')]
    value: Option<String>,
    /// The master's port, for -d 0.
    #[arg(short = 'm')]
    master: Option<u16>,
    /// 1: straight to the server on -p; 0: through the master on -m.
    #[arg(short = 'd', default_value = "0", value_parser = clap::value_parser!(u8).range(0..=1))]
    direct: u8,
}

/// The seed's flags, parsed; a usage error exits 1 ("failed"), not clap's
/// 2, which the seed keeps for a missing key.
fn parse<T: Parser>() -> Result<T, ExitCode> {
    T::try_parse().map_err(|e| {
        let _ = e.print();
        if e.use_stderr() {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS // --help
        }
    })
}

/// Runs `shardscope ARGS`.
fn shardscope(args: Vec<String>) -> ExitCode {
    let argv = std::iter::once("shardscope".to_string()).chain(args);
    match Cli::try_parse_from(argv) {
        Ok(cli) => cli::main(cli),
        Err(e) => {
            let _ = e.print();
            ExitCode::from(1)
        }
    }
}

fn path_arg(p: &Path) -> String {
    p.display().to_string()
}

/// `master-svr -p MASTER_PORT`.
pub fn master_svr() -> ExitCode {
    let args: MasterArgs = match parse() {
        Ok(a) => a,
        Err(code) => return code,
    };
    let dir = master_dir(args.port);
    shardscope(vec![
        "serve".into(),
        "--port".into(),
        args.port.to_string(),
        "--nodes".into(),
        "0".into(),
        "--registry-port".into(),
        "0".into(),
        "--data-dir".into(),
        path_arg(&dir),
    ])
}

/// `svr -p PORT -m MASTER_PORT`.
pub fn svr() -> ExitCode {
    let args: ServerArgs = match parse() {
        Ok(a) => a,
        Err(code) => return code,
    };
    let registry_dir = master_dir(args.master).join(REGISTRY_DIR);
    let address_file = registry_dir.join(REGISTRY_ADDRESS_FILE);
    let token_file = registry_dir.join(NODE_TOKEN_FILE);
    // The master writes both once its registry listens.
    let deadline = Instant::now() + MASTER_WAIT;
    let address = loop {
        match std::fs::read_to_string(&address_file) {
            Ok(a) if token_file.exists() && !a.trim().is_empty() => break a.trim().to_string(),
            _ if Instant::now() >= deadline => {
                eprintln!(
                    "error: no master-svr on port {} here: {} did not appear within {MASTER_WAIT:?} \
                     (run master-svr first, from the same directory or with the same {DIR_ENV})",
                    args.master,
                    address_file.display()
                );
                return ExitCode::from(1);
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    // Read by the node's registry client (Consul's own variable); set
    // before any thread starts.
    std::env::set_var("CONSUL_HTTP_TOKEN_FILE", &token_file);
    let data = shared_dir().join(format!("svr-{}", args.port));
    shardscope(vec![
        "node".into(),
        "--port".into(),
        args.port.to_string(),
        "--data-dir".into(),
        path_arg(&data),
        "--registry".into(),
        address,
    ])
}

/// `clt -p PORT -o GET|PUT -k KEY [-v VALUE] -m MASTER_PORT -d 0|1`.
pub fn clt() -> ExitCode {
    let args: ClientArgs = match parse() {
        Ok(a) => a,
        Err(code) => return code,
    };
    let mut argv: Vec<String> = match (args.operation, args.value) {
        (Operation::Get, _) => vec!["get".into(), args.key],
        (Operation::Put, Some(value)) => vec!["put".into(), args.key, value],
        (Operation::Put, None) => {
            eprintln!("error: PUT needs a value (-v VALUE)");
            return ExitCode::from(1);
        }
    };
    match (args.direct, args.port, args.master) {
        (1, Some(port), _) => argv.extend(["--direct".into(), format!("tcp://127.0.0.1:{port}")]),
        (0, _, Some(master)) => argv.extend(["--addr".into(), format!("http://127.0.0.1:{master}")]),
        (1, None, _) => {
            eprintln!("error: -d 1 talks to the server on -p PORT; give -p");
            return ExitCode::from(1);
        }
        _ => {
            eprintln!("error: -d 0 goes through the master on -m MASTER_PORT; give -m");
            return ExitCode::from(1);
        }
    }
    shardscope(argv)
}
