//! The command line, parsed with clap's derive API.
//!
//! ```text
//! pbx --data-dir DIR tenant add NAME --domain DOMAIN
//! pbx --data-dir DIR tenant list
//! pbx --data-dir DIR extension add TENANT EXT (--password PASS | --password-stdin)
//! pbx --data-dir DIR extension import TENANT FILE.csv
//! pbx --data-dir DIR extension list TENANT
//! pbx --data-dir DIR cdr list TENANT [--limit N] [--format csv|json]
//! pbx --data-dir DIR serve [--config FILE] [--sip-udp ADDR]... [--sip-tcp ADDR]...
//! pbx demo
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::logging::LogFormat;

/// A multi-tenant, programmable IP PBX.
#[derive(Debug, Parser)]
#[command(name = "pbx", version, about, long_about = None)]
pub struct Cli {
    /// Where the database lives [default: ./pbx-data]
    #[arg(long, global = true, env = "PBX_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage a tenant's extensions.
    #[command(subcommand)]
    Extension(ExtensionCommand),
    /// Read call detail records.
    #[command(subcommand)]
    Cdr(CdrCommand),
    /// Run the SIP server.
    Serve(ServeArgs),
    /// Provision a demo tenant `acme` (domain acme.example) with extensions 1000 and
    /// 1001, print their passwords and serve on 127.0.0.1:5060 (UDP and TCP).
    Demo(ServeArgs),
}

/// `pbx tenant ...`
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant with its primary SIP domain (also its digest realm).
    Add {
        /// A unique name for the tenant.
        name: String,
        /// The tenant's SIP domain, e.g. acme.example.
        #[arg(long)]
        domain: String,
    },
    /// Give a tenant a further SIP domain (its realm stays the primary domain).
    AddDomain {
        /// The tenant's name.
        tenant: String,
        /// The additional SIP domain.
        domain: String,
    },
    /// List every tenant.
    List,
}

/// `pbx extension ...`
#[derive(Debug, Subcommand)]
pub enum ExtensionCommand {
    /// Add one extension.
    Add {
        /// The tenant's name.
        tenant: String,
        /// The extension number (also the SIP user name).
        extension: String,
        /// The SIP password (visible in the process list; prefer --password-stdin).
        #[arg(
            long,
            conflicts_with = "password_stdin",
            required_unless_present = "password_stdin"
        )]
        password: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Import extensions from a CSV file of `extension,password` lines (all or nothing).
    Import {
        /// The tenant's name.
        tenant: String,
        /// The CSV file; a header line `extension,password` and blank lines are skipped.
        file: PathBuf,
    },
    /// List a tenant's extensions.
    List {
        /// The tenant's name.
        tenant: String,
    },
}

/// `pbx cdr ...`
#[derive(Debug, Subcommand)]
pub enum CdrCommand {
    /// List a tenant's call records, newest first.
    List {
        /// The tenant's name.
        tenant: String,
        /// At most this many records.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Output format.
        #[arg(long, value_enum, default_value_t = CdrFormat::Csv)]
        format: CdrFormat,
    },
}

/// How `cdr list` prints records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CdrFormat {
    Csv,
    Json,
}

/// Options of `serve` and `demo`; each flag overrides the configuration file.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// A TOML configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Listen for SIP over UDP on this address (repeatable).
    #[arg(long = "sip-udp", value_name = "ADDR")]
    pub sip_udp: Vec<SocketAddr>,
    /// Listen for SIP over TCP on this address (repeatable).
    #[arg(long = "sip-tcp", value_name = "ADDR")]
    pub sip_tcp: Vec<SocketAddr>,
    /// The host name or IP address put in Via and Contact headers.
    #[arg(long, value_name = "HOST")]
    pub advertise: Option<String>,
    /// Log line format.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("pbx").chain(args.iter().copied()))
    }

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn password_and_password_stdin_are_exclusive_and_one_is_required() {
        let both = parse(&[
            "extension",
            "add",
            "acme",
            "1000",
            "--password",
            "x",
            "--password-stdin",
        ]);
        assert!(both.is_err());
        let neither = parse(&["extension", "add", "acme", "1000"]);
        assert!(neither.is_err());
        let stdin = parse(&["extension", "add", "acme", "1000", "--password-stdin"]).unwrap();
        match stdin.command {
            Command::Extension(ExtensionCommand::Add {
                password,
                password_stdin,
                ..
            }) => {
                assert_eq!(password, None);
                assert!(password_stdin);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn serve_flags_repeat() {
        let cli = parse(&[
            "--data-dir",
            "/tmp/x",
            "serve",
            "--sip-udp",
            "127.0.0.1:5060",
            "--sip-udp",
            "[::1]:5060",
            "--sip-tcp",
            "0.0.0.0:5061",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert_eq!(cli.data_dir, Some(PathBuf::from("/tmp/x")));
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        assert_eq!(args.sip_udp.len(), 2);
        assert!(args.sip_udp[1].is_ipv6());
        assert_eq!(args.sip_tcp, vec!["0.0.0.0:5061".parse().unwrap()]);
        assert_eq!(args.log_format, Some(LogFormat::Json));
    }

    #[test]
    fn cdr_list_defaults() {
        let cli = parse(&["cdr", "list", "acme"]).unwrap();
        let Command::Cdr(CdrCommand::List { limit, format, .. }) = cli.command else {
            panic!("not cdr list");
        };
        assert_eq!(limit, 100);
        assert_eq!(format, CdrFormat::Csv);
        assert!(parse(&["cdr", "list", "acme", "--format", "xml"]).is_err());
    }
}
