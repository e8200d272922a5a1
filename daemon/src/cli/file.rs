//! The configuration file: every `serve` flag as a TOML key (`listen = "0.0.0.0:8080"`,
//! `data-dir = "/var/lib/graspd"`). `serve` and `nginx-config` read all of it; `status`,
//! `doctor` and `install-hooks` read the keys they share with `serve` (`data-dir`, `git-root`,
//! `grpc-socket`, `hook-binary`), so on a configured host they find the daemon without flags.
//!
//! Precedence is flag > environment > file > default. The file is applied by turning each key
//! that neither a flag nor the environment set into the flag it names and parsing the command
//! line again, so a value in the file is checked by exactly the parser that checks the flag, and
//! the file cannot accept anything the command line would refuse.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches};

use super::flags::Cli;

/// Read when neither `--config` nor `GRASPD_CONFIG` names a file, if it exists.
pub const DEFAULT_PATH: &str = "/etc/graspd/graspd.toml";

/// Subcommands that read the file (`serve` and `nginx-config` also take `--config`; the others
/// find it through `GRASPD_CONFIG` or at the default path).
const CONFIGURED: [&str; 5] = ["serve", "nginx-config", "status", "doctor", "install-hooks"];

/// Names the file for subcommands without `--config`.
const CONFIG_ENV: &str = "GRASPD_CONFIG";

/// Flags of those subcommands that are not configuration.
const NOT_KEYS: [&str; 3] = ["config", "print-config", "help"];

/// Why the configuration file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read the configuration file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: not valid TOML: {message}")]
    Toml { path: PathBuf, message: String },
    #[error("{path}: unknown key '{key}' (the keys are the long flags of `graspd serve --help`)")]
    UnknownKey { path: PathBuf, key: String },
    #[error("{path}: key '{key}': {why}")]
    BadValue { path: PathBuf, key: String, why: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The parsed command line with the configuration file applied, and which keys came from it.
pub struct Loaded {
    pub cli: Cli,
    pub matches: ArgMatches,
    /// The file that was read, if any.
    pub file: Option<PathBuf>,
    /// Flag ids whose value came from the file.
    pub from_file: Vec<String>,
}

/// Parses `argv` (clap prints help, version and usage errors and exits, as usual), then applies
/// the configuration file.
pub fn load(argv: Vec<OsString>) -> Result<Loaded, FileError> {
    let matches = Cli::command().get_matches_from(argv.clone());
    let Some((name, sub)) = matches.subcommand() else {
        return finish(matches, None, Vec::new());
    };
    if !CONFIGURED.contains(&name) {
        return finish(matches, None, Vec::new());
    }
    let named = if takes_config(name) {
        sub.get_one::<PathBuf>("config").cloned()
    } else {
        // No --config on this subcommand: the variable clap reads for the others.
        std::env::var_os(CONFIG_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let file = named.or_else(|| Some(PathBuf::from(DEFAULT_PATH)).filter(|path| path.is_file()));
    let Some(path) = file else {
        return finish(matches, None, Vec::new());
    };
    let text = std::fs::read_to_string(&path).map_err(|source| FileError::Read {
        path: path.clone(),
        source,
    })?;
    let (extra, from_file) = flags_from_file(&path, &text, name, sub)?;
    if extra.is_empty() {
        return finish(matches, Some(path), from_file);
    }
    // The file's flags go right after the subcommand's name, where clap reads them as that
    // subcommand's (also when a nested subcommand such as `status repo X` follows).
    let mut argv = argv;
    let at = argv
        .iter()
        .skip(1)
        .position(|arg| arg.as_os_str() == std::ffi::OsStr::new(name))
        .map_or(argv.len(), |i| i + 2);
    argv.splice(at..at, extra);
    let matches = Cli::command()
        .try_get_matches_from(argv)
        .map_err(|error| FileError::Invalid {
            path: path.clone(),
            message: error.render().to_string().trim().to_owned(),
        })?;
    finish(matches, Some(path), from_file)
}

/// Whether subcommand `name` has a `--config` flag, read from its definition: clap reports an id
/// a subcommand does not define only in debug builds (a release build answers "not given", and
/// `status` ignored `GRASPD_CONFIG` that way).
fn takes_config(name: &str) -> bool {
    Cli::command()
        .find_subcommand(name)
        .is_some_and(|command| command.get_arguments().any(|arg| arg.get_id() == "config"))
}

fn finish(matches: ArgMatches, file: Option<PathBuf>, from_file: Vec<String>) -> Result<Loaded, FileError> {
    let cli = Cli::from_arg_matches(&matches).map_err(|error| FileError::Invalid {
        path: file.clone().unwrap_or_default(),
        message: error.to_string(),
    })?;
    Ok(Loaded {
        cli,
        matches,
        file,
        from_file,
    })
}

/// The flags the file adds to the command line of subcommand `name`: one per key that neither a
/// flag nor the environment set. Returns them with the ids of the keys they came from.
fn flags_from_file(
    path: &Path,
    text: &str,
    name: &str,
    matches: &ArgMatches,
) -> Result<(Vec<OsString>, Vec<String>), FileError> {
    let table: toml::Table = toml::from_str(text).map_err(|error| FileError::Toml {
        path: path.to_owned(),
        message: error.message().to_owned(),
    })?;
    // The keys are `serve`'s flags whichever subcommand reads the file (`nginx-config` has them
    // all, and its own flags stay flags; the others take the ones they have), so one file serves
    // every subcommand.
    let command = Cli::command();
    let serve = command
        .find_subcommand("serve")
        .expect("graspd has a serve subcommand");
    let target = command
        .find_subcommand(name)
        .expect("load() only asks for a subcommand it found");
    let mut flags = Vec::new();
    let mut from_file = Vec::new();
    for (key, value) in &table {
        let long = key.replace('_', "-");
        let arg = serve
            .get_arguments()
            .find(|arg| arg.get_long() == Some(long.as_str()) && !NOT_KEYS.contains(&long.as_str()))
            .ok_or_else(|| FileError::UnknownKey {
                path: path.to_owned(),
                key: key.clone(),
            })?;
        let id = arg.get_id().as_str();
        let shared = target
            .get_arguments()
            .any(|own| own.get_id().as_str() == id && own.get_long() == Some(long.as_str()));
        if !shared {
            continue;
        }
        if matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let bad = |why: &str| FileError::BadValue {
            path: path.to_owned(),
            key: key.clone(),
            why: why.to_owned(),
        };
        let is_switch = matches!(arg.get_action(), ArgAction::SetTrue);
        match value {
            toml::Value::Boolean(on) if is_switch => {
                if *on {
                    flags.push(OsString::from(format!("--{long}")));
                }
            }
            _ if is_switch => return Err(bad("expected true or false")),
            toml::Value::String(text) => flags.push(OsString::from(format!("--{long}={text}"))),
            toml::Value::Integer(number) => flags.push(OsString::from(format!("--{long}={number}"))),
            _ => return Err(bad("expected a string or an integer")),
        }
        from_file.push(id.to_owned());
    }
    Ok((flags, from_file))
}

/// The effective configuration of `serve` (or `nginx-config`) as a TOML file that `--config`
/// reads back: every key with its value, each marked with where the value came from.
pub fn render(loaded: &Loaded) -> String {
    let Some((name, matches)) = loaded.matches.subcommand() else {
        return String::new();
    };
    // The keys are `serve`'s (`nginx-config`'s own flags are not configuration), read from the
    // matches of whichever of the two printed it.
    let command = Cli::command();
    let Some(sub) = command.find_subcommand("serve") else {
        return String::new();
    };
    debug_assert!(CONFIGURED.contains(&name));
    let mut out = String::from("# graspd configuration (graspd serve --print-config)\n");
    if let Some(file) = &loaded.file {
        out.push_str(&format!("# read from {}\n", file.display()));
    }
    for arg in sub.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if NOT_KEYS.contains(&long) || arg.is_positional() {
            continue;
        }
        let id = arg.get_id().as_str();
        let source = if loaded.from_file.iter().any(|f| f == id) {
            "file"
        } else {
            match matches.value_source(id) {
                Some(ValueSource::CommandLine) => "flag",
                Some(ValueSource::EnvVariable) => "environment",
                _ => "default",
            }
        };
        let value = if matches!(arg.get_action(), ArgAction::SetTrue) {
            Some(matches.get_flag(id).to_string())
        } else {
            matches
                .get_raw(id)
                .and_then(|mut raw| raw.next())
                .map(|raw| toml_value(&raw.to_string_lossy()))
        };
        match value {
            Some(value) => out.push_str(&format!("{long} = {value}  # {source}\n")),
            None => out.push_str(&format!("# {long} = (not set: {})\n", unset_meaning(arg))),
        }
    }
    out
}

/// A raw flag value as TOML: plain decimal numbers as integers, everything else as a string.
fn toml_value(raw: &str) -> String {
    let plain_number = !raw.is_empty()
        && raw.len() < 19
        && raw.bytes().all(|b| b.is_ascii_digit())
        && (raw == "0" || !raw.starts_with('0'));
    if plain_number {
        raw.to_owned()
    } else {
        toml::Value::String(raw.to_owned()).to_string()
    }
}

/// What an unset optional flag means: the "Default: ..." sentence of its help.
fn unset_meaning(arg: &clap::Arg) -> String {
    let help = arg
        .get_long_help()
        .or_else(|| arg.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default();
    match help.split_once("Default: ") {
        Some((_, rest)) => rest
            .split(". ")
            .next()
            .unwrap_or(rest)
            .trim_end_matches('.')
            .to_owned(),
        None => "off".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::flags::Command;
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), text).expect("write");
        file
    }

    fn load_serve(file: &Path, flags: &[&str]) -> Result<Loaded, FileError> {
        let mut argv: Vec<OsString> = ["graspd", "serve", "--config"].map(OsString::from).to_vec();
        argv.push(file.as_os_str().to_owned());
        argv.extend(flags.iter().map(OsString::from));
        load(argv)
    }

    fn serve_args(loaded: &Loaded) -> &super::super::flags::ServeArgs {
        match &loaded.cli.command {
            Command::Serve(args) => args,
            _ => panic!("not serve"),
        }
    }

    /// `serve` and `nginx-config` name their file with `--config`; the others through
    /// `GRASPD_CONFIG`, whatever the build (clap's check of unknown ids is debug-only).
    #[test]
    fn which_subcommands_name_their_file_with_a_flag() {
        for name in CONFIGURED {
            let expected = matches!(name, "serve" | "nginx-config");
            assert_eq!(takes_config(name), expected, "{name}");
        }
    }

    #[test]
    fn file_values_apply_and_a_flag_wins_over_the_file() {
        let file = write(
            "listen = \"127.0.0.1:9000\"\nname = \"from file\"\nmax_subscriptions = 7\n\
             sync-private-addresses = true\ngrpc-socket-mode = \"0660\"\n",
        );
        let loaded = load_serve(file.path(), &["--name", "from flag"]).expect("load");
        let args = serve_args(&loaded);
        assert_eq!(args.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(args.name, "from flag");
        assert_eq!(args.max_subscriptions, 7);
        assert!(args.sync_private_addresses);
        assert_eq!(args.grpc_socket_mode, 0o660);
        let printed = render(&loaded);
        assert!(
            printed.contains("listen = \"127.0.0.1:9000\"  # file"),
            "{printed}"
        );
        assert!(printed.contains("name = \"from flag\"  # flag"), "{printed}");
        assert!(printed.contains("max-subscriptions = 7  # file"), "{printed}");
        assert!(
            printed.contains("grpc-socket-mode = \"0660\"  # file"),
            "{printed}"
        );
        assert!(printed.contains("event-burst = 200  # default"), "{printed}");
        assert!(
            printed.contains("# domain = (not set: the listen address)"),
            "{printed}"
        );
    }

    #[test]
    fn printed_configuration_reads_back_to_the_same_arguments() {
        let file = write("listen = \"127.0.0.1:9001\"\ndescription = \"a \\\"quoted\\\" one\"\n");
        let first = load_serve(file.path(), &["--grpc-tcp-hooks"]).expect("load");
        let again = write(&render(&first));
        let second = load_serve(again.path(), &[]).expect("reload");
        assert_eq!(
            format!("{:?}", serve_args(&first)).replace(&file.path().display().to_string(), ""),
            format!("{:?}", serve_args(&second)).replace(&again.path().display().to_string(), ""),
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key_and_the_file() {
        let file = write("listen = \"127.0.0.1:9000\"\nlisten-port = 80\n");
        let error = load_serve(file.path(), &[]).err().expect("refused").to_string();
        assert!(error.contains("unknown key 'listen-port'"), "{error}");
        assert!(error.contains(&file.path().display().to_string()), "{error}");

        let file = write("grpc-tcp-hooks = \"yes\"\n");
        let error = load_serve(file.path(), &[]).err().expect("refused").to_string();
        assert!(
            error.contains("key 'grpc-tcp-hooks': expected true or false"),
            "{error}"
        );

        let file = write("listen = \"not an address\"\n");
        let error = load_serve(file.path(), &[]).err().expect("refused").to_string();
        assert!(error.contains("not an address"), "{error}");
        assert!(error.contains(&file.path().display().to_string()), "{error}");

        let file = write("listen = [1, 2]\n");
        let error = load_serve(file.path(), &[]).err().expect("refused").to_string();
        assert!(
            error.contains("key 'listen': expected a string or an integer"),
            "{error}"
        );

        let file = write("config = \"/elsewhere.toml\"\n");
        let error = load_serve(file.path(), &[]).err().expect("refused").to_string();
        assert!(error.contains("unknown key 'config'"), "{error}");

        let file = write("this is not toml");
        let error = load_serve(file.path(), &[]).err().expect("refused").to_string();
        assert!(error.contains("not valid TOML"), "{error}");
    }

    #[test]
    fn missing_named_file_is_an_error() {
        let error = load_serve(Path::new("/nonexistent/graspd.toml"), &[])
            .err()
            .expect("refused")
            .to_string();
        assert!(error.contains("cannot read the configuration file /nonexistent/graspd.toml"));
    }
}
