//! The command line and configuration file, as the binary sees them.

use clap::{CommandFactory, Parser};
use pbx::cli::{Cli, Command, ExtensionCommand, TenantCommand};
use pbx::config::{FileConfig, Settings};
use pbx::logging::LogFormat;

#[test]
fn clap_definition_is_valid() {
    Cli::command().debug_assert();
}

#[test]
fn documented_command_forms_parse() {
    let forms: &[&[&str]] = &[
        &[
            "pbx",
            "--data-dir",
            "d",
            "tenant",
            "add",
            "acme",
            "--domain",
            "acme.example",
        ],
        &["pbx", "--data-dir", "d", "tenant", "list"],
        &[
            "pbx",
            "--data-dir",
            "d",
            "extension",
            "add",
            "acme",
            "1000",
            "--password",
            "p",
        ],
        &[
            "pbx",
            "--data-dir",
            "d",
            "extension",
            "add",
            "acme",
            "1000",
            "--password-stdin",
        ],
        &[
            "pbx",
            "--data-dir",
            "d",
            "extension",
            "import",
            "acme",
            "x.csv",
        ],
        &["pbx", "--data-dir", "d", "extension", "list", "acme"],
        &[
            "pbx",
            "--data-dir",
            "d",
            "serve",
            "--sip-udp",
            "127.0.0.1:5060",
            "--sip-tcp",
            "127.0.0.1:5060",
        ],
        &[
            "pbx",
            "--data-dir",
            "d",
            "serve",
            "--config",
            "pbx.toml",
            "--log-format",
            "json",
        ],
        &["pbx", "demo"],
        &[
            "pbx",
            "--data-dir",
            "d",
            "cdr",
            "list",
            "acme",
            "--limit",
            "10",
            "--format",
            "json",
        ],
    ];
    for form in forms {
        assert!(Cli::try_parse_from(*form).is_ok(), "{form:?}");
    }
    let cli =
        Cli::try_parse_from(["pbx", "tenant", "add", "acme", "--domain", "a.example"]).unwrap();
    assert!(matches!(
        cli.command,
        Command::Tenant(TenantCommand::Add { ref name, ref domain }) if name == "acme" && domain == "a.example"
    ));
    let cli = Cli::try_parse_from(["pbx", "extension", "import", "acme", "f.csv"]).unwrap();
    assert!(matches!(
        cli.command,
        Command::Extension(ExtensionCommand::Import { .. })
    ));
}

#[test]
fn bad_command_lines_are_rejected() {
    for form in [
        &["pbx", "serve", "--sip-udp", "not-an-addr"][..],
        &["pbx", "tenant", "add", "acme"],
        &["pbx", "serve", "--log-format", "yaml"],
        &["pbx", "cdr", "list", "acme", "--limit", "-3"],
    ] {
        assert!(Cli::try_parse_from(form).is_err(), "{form:?}");
    }
}

#[test]
fn unknown_config_key_is_rejected() {
    let err = FileConfig::parse("[registrar]\nmax_expires = 60\nmin_expirez = 1\n").unwrap_err();
    assert!(err.to_string().contains("min_expirez"), "{err}");
}

#[test]
fn flags_override_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pbx.toml");
    std::fs::write(
        &path,
        "[sip]\nudp = [\"127.0.0.1:5070\"]\ntcp = [\"127.0.0.1:5071\"]\n[log]\nformat = \"json\"\n",
    )
    .unwrap();
    let cli = Cli::try_parse_from([
        "pbx",
        "serve",
        "--config",
        path.to_str().unwrap(),
        "--sip-tcp",
        "127.0.0.1:6000",
        "--sip-tcp",
        "[::1]:6000",
    ])
    .unwrap();
    let Command::Serve(args) = cli.command else {
        panic!("not serve");
    };
    let settings = Settings::load(&args).unwrap();
    assert_eq!(settings.serve.udp, vec!["127.0.0.1:5070".parse().unwrap()]);
    assert_eq!(
        settings.serve.tcp,
        vec![
            "127.0.0.1:6000".parse().unwrap(),
            "[::1]:6000".parse().unwrap()
        ]
    );
    assert_eq!(settings.log_format, LogFormat::Json);
}

#[test]
fn the_shipped_example_configuration_parses() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/pbx.toml");
    let file = pbx::config::FileConfig::load(&path).expect("examples/pbx.toml parses");
    assert_eq!(file.sip.tcp, vec!["0.0.0.0:5060".parse().unwrap()]);
    assert_eq!(file.registrar.max_contacts, Some(5));
    // The example shows the shipped digest default, not a different one.
    let settings = Settings::resolve(file, &Default::default()).expect("resolves");
    assert_eq!(
        settings.serve.core.digest_algorithms,
        pbx_core::CoreConfig::default().digest_algorithms
    );
    assert_eq!(
        settings.serve.core.digest_algorithms.to_string(),
        "MD5",
        "shipped default"
    );
}
