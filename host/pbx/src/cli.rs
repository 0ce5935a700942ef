//! The command line, parsed with clap's derive API.
//!
//! ```text
//! pbx --data-dir DIR tenant add NAME --domain DOMAIN
//! pbx --data-dir DIR tenant list
//! pbx --data-dir DIR tenant set TENANT [--media-encryption POLICY] [--digest ALGS|default]
//! pbx --data-dir DIR extension add TENANT EXT (--password PASS | --password-stdin)
//! pbx --data-dir DIR extension import TENANT FILE.csv
//! pbx --data-dir DIR extension list TENANT
//! pbx --data-dir DIR extension set TENANT EXT --digest SHA-256|MD5|SHA-256,MD5|default
//! pbx --data-dir DIR cdr list TENANT [--limit N] [--format csv|json]
//! pbx --data-dir DIR plugin install TENANT FILE.wasm
//! pbx --data-dir DIR plugin list TENANT
//! pbx --data-dir DIR plugin rollback TENANT [VERSION]
//! pbx --data-dir DIR policy install NAME FILE.wasm [--tenant TENANT]
//! pbx --data-dir DIR policy remove NAME
//! pbx --data-dir DIR policy list
//! pbx --data-dir DIR policy config set NAME KEY VALUE [--tenant TENANT]
//! pbx --data-dir DIR policy config get NAME KEY [--tenant TENANT]
//! pbx --data-dir DIR policy config list NAME [--tenant TENANT]
//! pbx --data-dir DIR policy config delete NAME KEY [--tenant TENANT]
//! pbx --data-dir DIR storage set TENANT KEY VALUE
//! pbx --data-dir DIR storage get TENANT KEY
//! pbx --data-dir DIR storage list TENANT
//! pbx --data-dir DIR storage delete TENANT KEY
//! pbx --data-dir DIR trunk add TENANT NAME --uri URI [--username USER [--password-stdin]]
//! pbx --data-dir DIR trunk list TENANT
//! pbx --data-dir DIR trunk remove TENANT NAME
//! pbx --data-dir DIR did add TENANT NUMBER
//! pbx --data-dir DIR did list TENANT
//! pbx --data-dir DIR did remove NUMBER
//! pbx --data-dir DIR user add USERNAME --role provider-admin|tenant-admin|user [--tenant TENANT] --password-stdin
//! pbx --data-dir DIR audit verify
//! pbx --data-dir DIR ban list
//! pbx --data-dir DIR ban remove ADDR
//! pbx --data-dir DIR approval list [TENANT]
//! pbx --data-dir DIR approval grant|deny ID --by NAME
//! pbx --data-dir DIR serve [--config FILE] [--sip-udp ADDR]... [--sip-tcp ADDR]... [--api ADDR]
//! pbx demo
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::logging::LogFormat;

/// A digest choice on the command line: `MD5`, `SHA-256`, both in order, or
/// `default` (inherit).
fn parse_digest(s: &str) -> Result<DigestChoice, String> {
    if s.eq_ignore_ascii_case("default") {
        Ok(DigestChoice::Default)
    } else {
        store::DigestAlgorithms::parse(s).map(DigestChoice::Algorithms)
    }
}

/// The digest algorithms offered to a tenant's or an extension's phones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigestChoice {
    /// Inherit: an extension its tenant's, a tenant the server's `[auth]`.
    Default,
    /// These, most preferred first.
    Algorithms(store::DigestAlgorithms),
}

impl DigestChoice {
    /// The stored form: `None` inherits.
    pub fn stored(&self) -> Option<&store::DigestAlgorithms> {
        match self {
            DigestChoice::Default => None,
            DigestChoice::Algorithms(a) => Some(a),
        }
    }
}

impl std::fmt::Display for DigestChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DigestChoice::Default => f.write_str("default"),
            DigestChoice::Algorithms(a) => a.fmt(f),
        }
    }
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("`{s}` is not on or off")),
    }
}

fn parse_media_encryption(s: &str) -> Result<store::MediaEncryption, String> {
    store::MediaEncryption::parse(s)
        .ok_or_else(|| format!("`{s}` is not one of required, optional, disabled"))
}

/// A multi-tenant, programmable IP PBX.
#[derive(Debug, Parser)]
#[command(name = "pbx", version, about, long_about = None)]
pub struct Cli {
    /// Where the database lives [default: ./pbx-data]
    #[arg(long, global = true, env = "PBX_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// The database: a `postgres://` URL [default: SQLite, `pbx.db` in the
    /// data directory, or `[store] url` of `serve --config`]
    #[arg(long, global = true, env = "PBX_DATABASE_URL", value_name = "URL")]
    pub database: Option<String>,

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
    /// Manage a tenant's dial-plan plugin versions.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Manage policy plugins (provider-wide or for one tenant).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Read and write a tenant's plugin storage (what its plugins keep).
    #[command(subcommand)]
    Storage(StorageCommand),
    /// Manage a tenant's outbound SIP trunks.
    #[command(subcommand)]
    Trunk(TrunkCommand),
    /// Manage inbound numbers (DIDs) and the tenants they route to.
    #[command(subcommand)]
    Did(DidCommand),
    /// Manage admin API users.
    #[command(subcommand)]
    User(UserCommand),
    /// Check the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Manage the admin API's signing keys.
    #[command(subcommand)]
    Api(ApiCommand),
    /// List and lift bans of abusive source addresses.
    #[command(subcommand)]
    Ban(BanCommand),
    /// Review tenants' requests to call restricted destinations.
    #[command(subcommand)]
    Approval(ApprovalCommand),
    /// The nodes of a cluster (several `pbx serve` on one PostgreSQL
    /// database).
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Drain a node of a cluster before an upgrade, or put it back.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Manage a tenant's prompts (audio its call handlers play by name).
    #[command(subcommand)]
    Prompt(PromptCommand),
    /// Read, delete and protect voicemail.
    #[command(subcommand)]
    Voicemail(VoicemailCommand),
    /// Encrypted backups of the data directory (database snapshot, keys,
    /// tenant audio), made while the server runs.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Audit the configuration: insecure listeners, tenants without required
    /// SRTP, admins without TOTP, long-lived tokens, trunks without TLS,
    /// readable key files, demo credentials, over-trusted networks,
    /// quarantined plugins, missing or old backups, a broken audit chain, a
    /// known-vulnerable version. Exits 1 on any high or critical finding.
    Doctor {
        /// The configuration file the server runs with.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
        /// A provider-published list of known-vulnerable versions or commits,
        /// one per line.
        #[arg(long, value_name = "FILE")]
        vulnerable_versions: Option<PathBuf>,
    },
    /// The build: version, git commit and every dependency's version (to
    /// match against security advisories).
    Version {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Apply the database migrations and print the schema version; or, with
    /// `--from` and `--to`, copy a SQLite data directory's database into an
    /// empty PostgreSQL database.
    Migrate(MigrateArgs),
    /// Run the SIP server (and the admin API with `--api` or `[api]`).
    Serve(ServeArgs),
    /// Provision a demo tenant `acme` (domain acme.example) with extensions 1000 and
    /// 1001, print their passwords and serve on 127.0.0.1:5060 (UDP and TCP), with
    /// the admin API on http://127.0.0.1:8080 (a provider admin `admin` is made,
    /// its password printed, when there is none).
    Demo(ServeArgs),
    /// Internal: compile one uploaded plugin (read from stdin) under CPU and
    /// memory limits, for the server or the CLI that started this process.
    #[command(name = "compile-plugin", hide = true)]
    CompilePlugin {
        /// The request, as the plugin runtime writes it.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        request: Vec<std::ffi::OsString>,
    },
}

/// `pbx prompt ...`
#[derive(Debug, Subcommand)]
pub enum PromptCommand {
    /// Upload a prompt: a `.wav` (16-bit PCM, 8 kHz, mono), or raw G.711 at
    /// 8 kHz (`.ul`/`.pcmu` for PCMU, `.al`/`.pcma` for PCMA). Replaces a
    /// prompt of the same name; counted against the tenant's media quota.
    Upload {
        /// The tenant's name.
        tenant: String,
        /// The prompt's name (1 to 64 letters, digits and `-_.`).
        name: String,
        /// The audio file.
        file: std::path::PathBuf,
    },
    /// List a tenant's prompts.
    List {
        /// The tenant's name.
        tenant: String,
    },
    /// Delete a prompt.
    Delete {
        /// The tenant's name.
        tenant: String,
        /// The prompt's name.
        name: String,
    },
}

/// `pbx voicemail ...`
#[derive(Debug, Subcommand)]
pub enum VoicemailCommand {
    /// List a mailbox's messages.
    List {
        /// The tenant's name.
        tenant: String,
        /// The mailbox (an extension number).
        mailbox: String,
    },
    /// Write a message's audio to a WAV file.
    Download {
        /// The tenant's name.
        tenant: String,
        /// The mailbox.
        mailbox: String,
        /// The message's id (`voicemail list` shows it).
        id: String,
        /// Where the WAV goes.
        out: std::path::PathBuf,
    },
    /// Delete a message.
    Delete {
        /// The tenant's name.
        tenant: String,
        /// The mailbox.
        mailbox: String,
        /// The message's id.
        id: String,
    },
    /// Set a mailbox's PIN (4 to 12 digits; stored hashed).
    Pin {
        /// The tenant's name.
        tenant: String,
        /// The mailbox.
        mailbox: String,
        /// The PIN.
        pin: String,
    },
}

/// `pbx user ...`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add an admin API user; the password (read from stdin) must meet the
    /// password policy.
    Add {
        /// The login name.
        username: String,
        /// What the user may do.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// The user's tenant (required for tenant-admin and user).
        #[arg(long)]
        tenant: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

/// An admin API user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    ProviderAdmin,
    TenantAdmin,
    User,
}

/// `pbx ban ...`
#[derive(Debug, Subcommand)]
pub enum BanCommand {
    /// List the bans in force: address, reason, count, first and last offence,
    /// end, and what was tried.
    List,
    /// Lift the ban of an address (a running server lifts it within a second).
    Remove {
        /// The banned IP address.
        addr: std::net::IpAddr,
    },
    /// Print the bans in force for the kernel's firewall, each with the time
    /// it has left: an `nft -f` script that refills the sets `banned4` and
    /// `banned6` of table `inet pbx`, or an `ipset restore` script for the
    /// sets `pbx-banned4` and `pbx-banned6`.
    Export {
        #[arg(long, value_enum, default_value = "nft")]
        format: BanExportFormat,
    },
    /// Keep the kernel's sets in step with the bans: whenever they change
    /// (checked every --every seconds), feed the script `export` prints to
    /// `nft -f -` (or `ipset restore`). Run it as its own service with only
    /// CAP_NET_ADMIN; the PBX itself needs no privilege.
    Sync {
        #[arg(long, value_enum, default_value = "nft")]
        format: BanExportFormat,
        /// Seconds between checks.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=3600))]
        every: u64,
        /// The program that reads the script on standard input (default
        /// `nft -f -`, or `ipset restore`).
        #[arg(long, value_name = "PROGRAM")]
        command: Option<std::path::PathBuf>,
        /// Apply once and exit (for cron, and to try the set-up).
        #[arg(long)]
        once: bool,
    },
}

/// `pbx cluster ...`
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Every node that ever joined: state (active, draining, or down when
    /// its heartbeat stopped), calls in progress, bindings held, last
    /// heartbeat, version and addresses; then the cluster's totals.
    Status {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `pbx node ...`
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Stop a node taking new calls and registrations (it answers them, and
    /// the front's probes, with 503 so the front picks another node) while
    /// the calls it holds finish. Takes effect within a second; lasts until
    /// `resume`, restarts included.
    Drain {
        /// The node's id (`[cluster] node`).
        id: String,
    },
    /// Let a drained node take new calls and registrations again.
    Resume {
        /// The node's id (`[cluster] node`).
        id: String,
    },
}

/// `pbx ban export --format`
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BanExportFormat {
    Nft,
    Ipset,
}

/// `pbx approval ...`
#[derive(Debug, Subcommand)]
pub enum ApprovalCommand {
    /// List one tenant's requests (every status), or every tenant's pending
    /// requests.
    List {
        /// The tenant's name; absent: pending requests of all tenants.
        tenant: Option<String>,
    },
    /// Grant a pending request (recorded in the audit log).
    Grant {
        id: i64,
        /// Who decides (recorded with the decision).
        #[arg(long)]
        by: String,
    },
    /// Deny a pending request (recorded in the audit log).
    Deny {
        id: i64,
        /// Who decides (recorded with the decision).
        #[arg(long)]
        by: String,
    },
}

/// `pbx api ...`
#[derive(Debug, Subcommand)]
pub enum ApiCommand {
    /// Make a new token-signing key (the API signs with it from its next start;
    /// tokens of older keys keep working until they expire) and delete keys
    /// whose successor is older than the longest token lifetime (a year).
    RotateKey,
}

/// `pbx audit ...`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the audit log's keyed chain (HMAC with a key derived from
    /// DATA_DIR/secret.key); fails naming every edited, deleted or missing
    /// entry, even if the editor recomputed plain hashes.
    Verify,
    /// Delete the entries older than N days, after verifying the whole log,
    /// behind a keyed checkpoint the rest of the log links to (what
    /// `[retention] audit_days` does every hour).
    Purge {
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        older_than_days: u32,
    },
}

/// `pbx backup ...`: archives are age files, to a passphrase (read from
/// standard input, one line) or to X25519 recipients (`age1…`).
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Write an encrypted backup of DIR to a new file. On PostgreSQL
    /// (--database) the database is dumped with pg_dump, which must be
    /// installed.
    Create {
        /// The archive to write (never overwritten).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        seal: SealArgs,
    },
    /// Check that an archive decrypts and every file in it is intact,
    /// restoring nothing.
    Verify {
        file: PathBuf,
        #[command(flatten)]
        key: UnlockArgs,
    },
    /// Restore an archive into --data-dir, a new or empty directory. An
    /// archive of a PostgreSQL database is loaded with pg_restore into the
    /// database --database names, which must be new and empty (one with
    /// tables is refused); without --database its dump is left in the
    /// directory as pbx.pgdump, with the command that loads it.
    Restore {
        file: PathBuf,
        #[command(flatten)]
        key: UnlockArgs,
    },
}

/// Whom a new archive (a backup, a tenant export) is encrypted to.
#[derive(Debug, clap::Args)]
pub struct SealArgs {
    /// Encrypt to the passphrase on standard input (one line; the default
    /// without --recipient or PBX_BACKUP_PASSPHRASE).
    #[arg(long, conflicts_with = "recipients")]
    pub passphrase_stdin: bool,
    /// Encrypt to this age public key (repeatable).
    #[arg(long = "recipient", value_name = "AGE1…")]
    pub recipients: Vec<String>,
    #[command(flatten)]
    pub env: PassphraseEnv,
}

/// What opens a backup archive.
#[derive(Debug, clap::Args)]
pub struct UnlockArgs {
    /// The passphrase, on standard input (one line; the default without
    /// --identity or PBX_BACKUP_PASSPHRASE).
    #[arg(long, conflicts_with = "identity")]
    pub passphrase_stdin: bool,
    /// An age identity file holding the key of a recipient.
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    #[command(flatten)]
    pub env: PassphraseEnv,
}

/// A backup passphrase from the environment, for scripts and cron
/// (`PBX_BACKUP_PASSPHRASE`); never a command-line argument, which other
/// users could read.
#[derive(Debug, clap::Args)]
pub struct PassphraseEnv {
    #[arg(
        long = "passphrase-from-env",
        env = "PBX_BACKUP_PASSPHRASE",
        hide = true,
        hide_env_values = true
    )]
    pub passphrase: Option<String>,
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
    /// Write one tenant (rows, plugins, prompts, voicemail, recordings) to an
    /// encrypted file that `pbx tenant import` reads on another PBX.
    Export {
        /// The tenant's name.
        tenant: String,
        /// The file to write (never overwritten).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        seal: SealArgs,
    },
    /// Add the tenant of an export file to this PBX, with new ids; its
    /// domains, numbers and user names must be free here.
    Import {
        file: PathBuf,
        /// The name to give the tenant here (the exported name by default).
        #[arg(long = "as", value_name = "NAME")]
        as_name: Option<String>,
        #[command(flatten)]
        key: UnlockArgs,
    },
    /// Change a tenant's settings.
    Set {
        /// The tenant's name.
        tenant: String,
        /// SRTP policy: required (a plaintext offer gets 488), optional, disabled.
        #[arg(long, value_parser = parse_media_encryption, value_name = "POLICY")]
        media_encryption: Option<store::MediaEncryption>,
        /// Digest challenges for the tenant's phones: MD5, SHA-256, or both in
        /// order of preference (SHA-256,MD5); `default` follows `[auth]
        /// algorithms` (MD5 as shipped). Offer SHA-256 only to phones known to
        /// handle it.
        #[arg(long, value_parser = parse_digest, value_name = "ALGORITHMS")]
        digest: Option<DigestChoice>,
        /// Record every answered call between phones or trunks (`on`), both
        /// parties hearing the `recording-notice` prompt (a tone without
        /// one) first; `off` as shipped.
        #[arg(long, value_parser = parse_on_off, value_name = "on|off")]
        call_recording: Option<bool>,
    },
    /// Replace a tenant's calendar (read by its call handlers): its time zone
    /// and its holidays. Without arguments, show it.
    Calendar {
        /// The tenant's name.
        tenant: String,
        /// An IANA time zone, e.g. Europe/Paris.
        #[arg(long, value_name = "ZONE")]
        time_zone: Option<String>,
        /// A holiday, DATE=NAME (e.g. 2026-12-25=Christmas); repeat for more.
        /// Replaces the holidays listed before.
        #[arg(long, value_name = "DATE=NAME")]
        holiday: Vec<String>,
    },
    /// Allow a network (address or CIDR) for the tenant's phones, or with
    /// `--extension` for one extension (which must then pass both lists). A tenant
    /// with no networks listed accepts any address.
    Allow {
        /// The tenant's name.
        tenant: String,
        /// An address or CIDR network, e.g. 203.0.113.0/24.
        network: String,
        #[arg(long)]
        extension: Option<String>,
    },
    /// Remove an allowed network.
    Disallow {
        /// The tenant's name.
        tenant: String,
        network: String,
        #[arg(long)]
        extension: Option<String>,
    },
    /// List the tenant's allowed networks.
    Networks {
        /// The tenant's name.
        tenant: String,
    },
    /// Set a tenant's call limits (provider-controlled; omitted ones keep the
    /// host default). Takes effect on a running server.
    Limits {
        /// The tenant's name.
        tenant: String,
        /// Calls in progress for the whole tenant.
        #[arg(long)]
        max_concurrent: Option<u32>,
        /// Calls in progress per extension.
        #[arg(long)]
        max_concurrent_extension: Option<u32>,
        /// New calls per second for the whole tenant.
        #[arg(long)]
        max_calls_per_second: Option<u32>,
        /// Spend per UTC day, in cents.
        #[arg(long)]
        daily_cap_cents: Option<u64>,
        /// Bytes of prompts and voicemail the tenant may keep.
        #[arg(long)]
        media_storage_bytes: Option<u64>,
        /// Host media sessions (IVR, voicemail, mailbox menu) at once.
        #[arg(long)]
        max_media_sessions: Option<u32>,
        /// Minutes of recorded audio (voicemail) the tenant may keep.
        #[arg(long)]
        recording_minutes: Option<u32>,
    },
    /// Show or set how long a tenant's call records and alerts are kept, in
    /// days (never longer than the provider's `[retention]` maximum);
    /// without options, show it.
    Retention {
        /// The tenant's name.
        tenant: String,
        #[arg(long)]
        cdr_days: Option<u32>,
        #[arg(long)]
        alert_days: Option<u32>,
        /// Back to the provider's default for both.
        #[arg(long, conflicts_with_all = ["cdr_days", "alert_days"])]
        default: bool,
    },
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
    /// List a tenant's extensions: number, enabled or disabled, digest
    /// algorithms (`default`: the tenant's).
    List {
        /// The tenant's name.
        tenant: String,
    },
    /// Change an extension's settings.
    Set {
        /// The tenant's name.
        tenant: String,
        /// The extension number.
        extension: String,
        /// Digest challenges for this extension's phone: MD5, SHA-256, or both
        /// in order of preference; `default` follows the tenant's choice.
        #[arg(long, value_parser = parse_digest, value_name = "ALGORITHMS")]
        digest: DigestChoice,
    },
    /// Change an extension's call forwarding and do-not-disturb, then show
    /// them. Options not given keep their value; an empty TARGET ('') removes
    /// that forward. A TARGET is one of the tenant's extensions, one of its
    /// groups, or a number (letters and digits, optionally after a leading +).
    Forward {
        /// The tenant's name.
        tenant: String,
        /// The extension number.
        extension: String,
        /// Forward every call here; the extension does not ring.
        #[arg(long, value_name = "TARGET")]
        always: Option<String>,
        /// Forward here when the extension is busy (or in do-not-disturb).
        #[arg(long, value_name = "TARGET")]
        busy: Option<String>,
        /// Forward here when nobody answers in --no-answer-secs.
        #[arg(long, value_name = "TARGET")]
        no_answer: Option<String>,
        /// How long the extension rings before the no-answer forward (1 to 300;
        /// 20 until set).
        #[arg(long, value_name = "SECS")]
        no_answer_secs: Option<u32>,
        /// Do not disturb: the extension is not rung.
        #[arg(long, value_parser = parse_on_off, value_name = "on|off")]
        dnd: Option<bool>,
        /// Start from nothing forwarded and do-not-disturb off, then apply the
        /// other options.
        #[arg(long)]
        clear: bool,
    },
    /// Show an extension's call forwarding and do-not-disturb.
    Forwarding {
        /// The tenant's name.
        tenant: String,
        /// The extension number.
        extension: String,
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

/// `pbx plugin ...`
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Validate a dial-plan component and make it the tenant's active version.
    Install {
        /// The tenant's name.
        tenant: String,
        /// The component (a `.wasm` file built for wasm32-wasip2).
        file: PathBuf,
    },
    /// List the tenant's dial-plan versions (`*` marks the active one).
    List {
        /// The tenant's name.
        tenant: String,
    },
    /// Make an earlier version active again: the one before the active version,
    /// or the given one.
    Rollback {
        /// The tenant's name.
        tenant: String,
        /// The version to activate [default: the one before the active version].
        version: Option<i64>,
    },
}

/// `pbx policy ...`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy component and install it (replacing one of the same name).
    Install {
        /// A unique name for the policy.
        name: String,
        /// The component (a `.wasm` file built for wasm32-wasip2).
        file: PathBuf,
        /// Apply it to this tenant only [default: every tenant].
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Remove a policy.
    Remove {
        /// The policy's name.
        name: String,
    },
    /// Go back to a policy's version before its last install (the one
    /// replaced is kept, so a rollback can be undone the same way).
    Rollback {
        /// The policy's name.
        name: String,
    },
    /// List the installed policies.
    List,
    /// The provider's configuration of a policy (the shipped `default-policy`
    /// included): provider-wide, or overridden for one tenant with `--tenant`.
    /// Tenants and their plugins can neither read nor change it.
    #[command(subcommand)]
    Config(PolicyConfigCommand),
}

/// `pbx policy config ...`
#[derive(Debug, Subcommand)]
pub enum PolicyConfigCommand {
    /// Set a key (replacing its value).
    Set {
        /// The policy's name.
        name: String,
        /// The key (1-128 characters of A-Z a-z 0-9 . _ : -).
        key: String,
        /// The value (printable text, at most 1024 bytes).
        value: String,
        /// Set this tenant's override [default: the provider-wide value].
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Print a key's value in exactly that scope (exits non-zero when unset).
    Get {
        /// The policy's name.
        name: String,
        /// The key.
        key: String,
        /// Read this tenant's override [default: the provider-wide value].
        #[arg(long)]
        tenant: Option<String>,
    },
    /// List the keys and values of one scope (`KEY<TAB>VALUE` lines).
    List {
        /// The policy's name.
        name: String,
        /// List this tenant's overrides [default: the provider-wide values].
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Remove a key from one scope.
    Delete {
        /// The policy's name.
        name: String,
        /// The key.
        key: String,
        /// Remove this tenant's override [default: the provider-wide value].
        #[arg(long)]
        tenant: Option<String>,
    },
}

/// `pbx storage ...`
#[derive(Debug, Subcommand)]
pub enum StorageCommand {
    /// Set a key of the tenant's plugin storage (within its 1 MiB quota).
    Set {
        /// The tenant's name.
        tenant: String,
        /// The key (1-256 bytes).
        key: String,
        /// The value, stored as its UTF-8 bytes.
        value: String,
    },
    /// Print a key's value (exits non-zero when unset).
    Get {
        /// The tenant's name.
        tenant: String,
        /// The key.
        key: String,
    },
    /// List the tenant's keys and values (`KEY<TAB>VALUE` lines; values that
    /// are not UTF-8 text are shown as hex with a `hex:` prefix).
    List {
        /// The tenant's name.
        tenant: String,
    },
    /// Remove a key.
    Delete {
        /// The tenant's name.
        tenant: String,
        /// The key.
        key: String,
    },
}

/// `pbx trunk ...`
#[derive(Debug, Subcommand)]
pub enum TrunkCommand {
    /// Add an outbound SIP trunk (it registers when a user name is given).
    Add {
        /// The tenant's name.
        tenant: String,
        /// A name for the trunk, unique within the tenant.
        name: String,
        /// Where it is: `sip:HOST[:PORT][;transport=udp|tcp|tls]` or `sips:HOST[:PORT]`.
        #[arg(long)]
        uri: String,
        /// The user name to authenticate and register with.
        #[arg(long)]
        username: Option<String>,
        /// Read the trunk password from the first line of standard input.
        #[arg(long, requires = "username")]
        password_stdin: bool,
    },
    /// List a tenant's trunks (passwords are never shown).
    List {
        /// The tenant's name.
        tenant: String,
    },
    /// Remove a trunk.
    Remove {
        /// The tenant's name.
        tenant: String,
        /// The trunk's name.
        name: String,
    },
}

/// `pbx did ...`
#[derive(Debug, Subcommand)]
pub enum DidCommand {
    /// Route an inbound number (an optional + and 3-20 digits) to a tenant.
    Add {
        /// The tenant's name.
        tenant: String,
        /// The number, e.g. +4930123456.
        number: String,
    },
    /// List a tenant's numbers.
    List {
        /// The tenant's name.
        tenant: String,
    },
    /// Remove a number.
    Remove {
        /// The number.
        number: String,
    },
}

/// How `cdr list` prints records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CdrFormat {
    Csv,
    Json,
}

/// Options of `migrate`.
#[derive(Debug, Clone, Default, Args)]
pub struct MigrateArgs {
    /// The data directory whose SQLite database (`pbx.db`) is copied.
    #[arg(long, value_name = "DATA_DIR", requires = "to")]
    pub from: Option<PathBuf>,
    /// The empty PostgreSQL database it is copied into (`postgres://...`).
    #[arg(long, value_name = "URL", requires = "from")]
    pub to: Option<String>,
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
    /// Listen for SIP over TLS on this address (repeatable; needs --tls-cert and --tls-key).
    #[arg(long = "sip-tls", value_name = "ADDR")]
    pub sip_tls: Vec<SocketAddr>,
    /// Listen for SIP over secure WebSocket (RFC 7118, for browsers) on this
    /// address (repeatable; needs --tls-cert and --tls-key).
    #[arg(long = "sip-wss", value_name = "ADDR")]
    pub sip_wss: Vec<SocketAddr>,
    /// PEM certificate chain of the TLS listeners.
    #[arg(long, value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the TLS listeners.
    #[arg(long, value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates that TLS connections to trunks are verified against.
    #[arg(long, value_name = "PEM")]
    pub tls_ca: Option<PathBuf>,
    /// The host name or IP address put in Via and Contact headers.
    #[arg(long, value_name = "HOST")]
    pub advertise: Option<String>,
    /// Log line format.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Serve the admin API on this address (TLS; plain HTTP only on loopback
    /// with `plain_http` in `[api]`).
    #[arg(long, value_name = "ADDR")]
    pub api: Option<SocketAddr>,
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
    fn plugin_and_provisioning_commands_parse() {
        let cli = parse(&["plugin", "rollback", "acme"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Plugin(PluginCommand::Rollback { version: None, .. })
        ));
        let cli = parse(&["plugin", "rollback", "acme", "3"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Plugin(PluginCommand::Rollback {
                version: Some(3),
                ..
            })
        ));
        assert!(parse(&["plugin", "rollback", "acme", "three"]).is_err());
        let cli = parse(&["policy", "install", "fraud", "p.wasm", "--tenant", "acme"]).unwrap();
        let Command::Policy(PolicyCommand::Install { tenant, .. }) = cli.command else {
            panic!("not policy install");
        };
        assert_eq!(tenant.as_deref(), Some("acme"));
        // The password comes from stdin only, and only with a user name.
        assert!(parse(&["trunk", "add", "acme", "gw", "--uri", "sip:gw.example"]).is_ok());
        assert!(
            parse(&[
                "trunk",
                "add",
                "acme",
                "gw",
                "--uri",
                "sip:gw.example",
                "--password-stdin"
            ])
            .is_err()
        );
        assert!(
            parse(&[
                "trunk",
                "add",
                "acme",
                "gw",
                "--uri",
                "sip:gw.example",
                "--password",
                "x"
            ])
            .is_err()
        );
        assert!(parse(&["trunk", "add", "acme", "gw"]).is_err());
        assert!(parse(&["did", "remove", "+4930123456"]).is_ok());
    }

    #[test]
    fn user_add_and_audit_verify_parse() {
        let cli = parse(&[
            "user",
            "add",
            "root",
            "--role",
            "provider-admin",
            "--password-stdin",
        ])
        .unwrap();
        let Command::User(UserCommand::Add { role, tenant, .. }) = cli.command else {
            panic!("not user add");
        };
        assert_eq!((role, tenant), (RoleArg::ProviderAdmin, None));
        assert!(parse(&["user", "add", "bob", "--role", "user", "--tenant", "acme"]).is_err());
        assert!(parse(&["user", "add", "bob", "--role", "boss", "--password-stdin"]).is_err());
        assert!(matches!(
            parse(&["audit", "verify"]).unwrap().command,
            Command::Audit(AuditCommand::Verify)
        ));
        let cli = parse(&["serve", "--api", "127.0.0.1:8443"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        assert_eq!(args.api, Some("127.0.0.1:8443".parse().unwrap()));
    }

    #[test]
    fn digest_choices_parse() {
        let cli = parse(&["tenant", "set", "acme", "--digest", "sha-256,md5"]).unwrap();
        let Command::Tenant(TenantCommand::Set { digest, .. }) = cli.command else {
            panic!("not tenant set");
        };
        assert_eq!(
            digest.map(|d| d.to_string()).as_deref(),
            Some("SHA-256,MD5")
        );
        let cli = parse(&["extension", "set", "acme", "1000", "--digest", "default"]).unwrap();
        let Command::Extension(ExtensionCommand::Set { digest, .. }) = cli.command else {
            panic!("not extension set");
        };
        assert_eq!(digest, DigestChoice::Default);
        assert_eq!(digest.stored(), None);
        for bad in ["SHA-512", "MD5,MD5", ""] {
            assert!(
                parse(&["extension", "set", "acme", "1000", "--digest", bad]).is_err(),
                "{bad:?}"
            );
        }
        assert!(parse(&["extension", "set", "acme", "1000"]).is_err());
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
