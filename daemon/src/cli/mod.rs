//! `graspd`'s subcommands: each parses its arguments (with the configuration file applied) and
//! calls the library. `serve` runs the server; the others help deploy and operate it.

mod deploy;
mod doctor;
mod file;
mod flags;
mod status;

use clap::CommandFactory;
use flags::{Cli, Command, DoctorArgs, InstallHooksArgs, LogFormat, NginxConfigArgs};
use graspd::config::absolute;
use graspd::git::GitRepos;
use tracing_subscriber::EnvFilter;

/// Runs the subcommand named on the command line.
pub async fn run() -> anyhow::Result<()> {
    let loaded = match file::load(std::env::args_os().collect()) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("graspd: {error}");
            std::process::exit(2);
        }
    };
    match &loaded.cli.command {
        Command::Serve(args) if args.print_config => {
            print!("{}", file::render(&loaded));
            return Ok(());
        }
        Command::NginxConfig(args) if args.serve.print_config => {
            print!("{}", file::render(&loaded));
            return Ok(());
        }
        _ => {}
    }
    match loaded.cli.command {
        Command::Serve(args) => {
            let args = *args;
            init_logging(&args.log, args.log_format)?;
            let config = flags::config(&args)?;
            let stop = stop_signal();
            graspd::server::run(config, stop).await?;
        }
        Command::InstallHooks(args) => install_hooks(args).await?,
        Command::Status(args) => status::run(args).await?,
        Command::NginxConfig(args) => nginx_config(*args)?,
        Command::Doctor(args) => {
            if !doctor(args).await {
                std::process::exit(1);
            }
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "graspd", &mut std::io::stdout());
        }
        Command::Man { out_dir } => man(out_dir)?,
    }
    Ok(())
}

/// `graspd man`: the manual page of `graspd` on stdout, or with `--out-dir` one page per command
/// (`graspd.1`, `graspd-serve.1`, ...) written there.
fn man(out_dir: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let command = Cli::command();
    let Some(dir) = out_dir else {
        clap_mangen::Man::new(command).render(&mut std::io::stdout())?;
        return Ok(());
    };
    std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    let mut pages = vec![("graspd.1".to_owned(), command.clone())];
    for sub in command.get_subcommands() {
        let name = format!("graspd-{}", sub.get_name());
        pages.push((format!("{name}.1"), sub.clone().display_name(name)));
    }
    for (file, page) in pages {
        let path = dir.join(&file);
        let mut out = Vec::new();
        clap_mangen::Man::new(page).render(&mut out)?;
        std::fs::write(&path, out).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}

/// `graspd nginx-config`: prints the nginx configuration for `graspd serve` with these flags.
fn nginx_config(args: NginxConfigArgs) -> anyhow::Result<()> {
    let config = flags::config(&args.serve)?;
    let http_backend = match &args.http_backend {
        Some(path) => path.clone(),
        None => deploy::http_backend_path(&config.git_program)?,
    };
    let site = deploy::NginxSite::new(&config, &args, http_backend)?;
    print!("{}", deploy::nginx_config(&site));
    Ok(())
}

/// `graspd doctor`: prints one line per check; returns whether all passed.
async fn doctor(args: DoctorArgs) -> bool {
    let data_dir = absolute(&args.data_dir);
    let hooks = args.hooks.setup(&data_dir);
    let git_root = absolute(&graspd::config::git_root(&data_dir, args.git_root.as_deref()));
    let mut install_hooks = format!(
        "graspd install-hooks --data-dir {} --git-root {}",
        data_dir.display(),
        git_root.display()
    );
    if let Some(socket) = &args.hooks.grpc_socket {
        install_hooks.push_str(&format!(" --grpc-socket {}", absolute(socket).display()));
    }
    if let Some(hook) = &args.hooks.hook_binary {
        install_hooks.push_str(&format!(" --hook-binary {}", absolute(hook).display()));
    }
    if doctor::running_as_root() {
        println!(
            "note: running as root, for whom every permission check passes; run it as the user git \
             http-backend runs as too (e.g. sudo -u www-data -g graspd graspd doctor ...)"
        );
    }
    let git = GitRepos::new(
        git_root,
        hooks,
        "git".into(),
        graspd::git::default_branch("git".as_ref()),
    );
    let findings = doctor::run(&git, &install_hooks, &mut Progress::new("doctor: checked")).await;
    for finding in &findings {
        println!("{finding}");
    }
    let failed = findings.iter().filter(|f| !f.ok).count();
    println!(
        "{} check{}, {failed} failed",
        findings.len(),
        if findings.len() == 1 { "" } else { "s" }
    );
    failed == 0
}

/// `graspd install-hooks`: hooks directory, then every repository under the git root.
async fn install_hooks(args: InstallHooksArgs) -> anyhow::Result<()> {
    let data_dir = absolute(&args.data_dir);
    let hooks = args.hooks.setup(&data_dir);
    let git_root = absolute(&graspd::config::git_root(&data_dir, args.git_root.as_deref()));
    let git = GitRepos::new(
        git_root.clone(),
        hooks,
        "git".into(),
        graspd::git::default_branch("git".as_ref()),
    );
    let verb = if args.dry_run { "would" } else { "did" };
    let mut changes = git.prepare_hooks_dir(args.dry_run).await?;
    let repos = git.list_all_repo_dirs();
    let mut progress = Progress::new("install-hooks: configured");
    progress.start(repos.len());
    for (done, repo) in repos.iter().enumerate() {
        progress.at(done);
        changes.extend(git.install_hooks_at(repo.clone(), args.dry_run).await?);
    }
    progress.done(repos.len());
    for change in &changes {
        println!("{verb}: {change}");
    }
    println!(
        "{} repositor{} under {}; {} change{}{}",
        repos.len(),
        if repos.len() == 1 { "y" } else { "ies" },
        git_root.display(),
        changes.len(),
        if changes.len() == 1 { "" } else { "s" },
        if args.dry_run {
            " (dry run: nothing written)"
        } else {
            ""
        }
    );
    Ok(())
}

/// Progress of a walk over every repository, on stderr: a line a second, and only once the walk
/// has taken a second, so a small git root prints nothing extra.
pub struct Progress {
    what: &'static str,
    total: usize,
    started: std::time::Instant,
    printed: Option<std::time::Instant>,
}

impl Progress {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(1);

    fn new(what: &'static str) -> Self {
        Self {
            what,
            total: 0,
            started: std::time::Instant::now(),
            printed: None,
        }
    }

    fn start(&mut self, total: usize) {
        self.total = total;
        self.started = std::time::Instant::now();
    }

    /// `done` repositories so far.
    fn at(&mut self, done: usize) {
        let last = self.printed.unwrap_or(self.started);
        if last.elapsed() >= Self::EVERY {
            self.print(done);
        }
    }

    /// The last line, when any was printed.
    fn done(&mut self, done: usize) {
        if self.printed.is_some() {
            self.print(done);
        }
    }

    fn print(&mut self, done: usize) {
        let seconds = self.started.elapsed().as_secs_f64();
        eprintln!(
            "{} {done} of {} repositories ({:.0} a second)",
            self.what,
            self.total,
            done as f64 / seconds.max(1e-3)
        );
        self.printed = Some(std::time::Instant::now());
    }
}

fn init_logging(filter: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(filter).map_err(|e| anyhow::anyhow!("--log '{filter}': {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: log files and journald get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

/// Starts listening for SIGINT and SIGTERM now, before start-up's catch-up work (a signal during
/// it then stops the server cleanly instead of killing it), and returns a future that resolves on
/// either.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    let listen = |kind: SignalKind, name: &str| match signal(kind) {
        Ok(stream) => Some(stream),
        Err(error) => {
            tracing::error!(%error, "cannot listen for {name}");
            None
        }
    };
    let mut interrupt = listen(SignalKind::interrupt(), "SIGINT");
    let mut terminate = listen(SignalKind::terminate(), "SIGTERM");
    async fn received(stream: &mut Option<Signal>) {
        match stream {
            Some(stream) => {
                stream.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    }
    async move {
        tokio::select! {
            _ = received(&mut interrupt) => {}
            _ = received(&mut terminate) => {}
        }
    }
}
