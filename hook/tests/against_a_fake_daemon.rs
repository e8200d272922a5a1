//! `grasp-hook` run as git runs it, against a fake graspd serving `HookService` on a Unix socket:
//! the exit statuses and `remote:` lines a pusher sees, fail-closed pre-receive and the
//! post-receive spool (ARCHITECTURE.md §2, "Push").

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use grasp_proto::v1::hook_service_server::{HookService, HookServiceServer};
use grasp_proto::v1::{
    AuthorizePushRequest, AuthorizePushResponse, CheckRequest, CheckResponse, ProcessResult, RefVerdict,
    ReportPushRequest, ReportPushResponse,
};
use prost::Message;
use tokio::io::AsyncWriteExt;
use tonic::{Request, Response, Status};

const OLD: &str = "1111111111111111111111111111111111111111";
const NEW: &str = "2222222222222222222222222222222222222222";

/// Answers like graspd would, by ref name: `denied` refs are refused, `slow` refs take a minute.
#[derive(Default, Clone)]
struct FakeDaemon {
    authorized: Arc<Mutex<Vec<AuthorizePushRequest>>>,
    reported: Arc<Mutex<Vec<ReportPushRequest>>>,
    /// ReportPush answers an error status (the daemon is up but cannot process).
    fail_reports: bool,
}

#[tonic::async_trait]
impl HookService for FakeDaemon {
    async fn check(&self, request: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        let repo = request.into_inner().repo_path;
        let repo_known = repo.ends_with("repo.git");
        Ok(Response::new(CheckResponse {
            version: "0.0.0-test".to_owned(),
            repo_known,
            message: if repo.is_empty() {
                "no repository given".to_owned()
            } else {
                format!("checked {repo}")
            },
        }))
    }

    async fn authorize_push(
        &self,
        request: Request<AuthorizePushRequest>,
    ) -> Result<Response<AuthorizePushResponse>, Status> {
        let request = request.into_inner();
        if request.updates.iter().any(|u| u.ref_name.contains("slow")) {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        self.authorized.lock().expect("lock").push(request.clone());
        let verdicts: Vec<RefVerdict> = request
            .updates
            .iter()
            .map(|u| {
                let allowed = !u.ref_name.contains("denied");
                let message = if allowed {
                    format!("{} matches the state event.", u.ref_name)
                } else {
                    format!("{} is not in the maintainers' state event.", u.ref_name)
                };
                RefVerdict {
                    ref_name: u.ref_name.clone(),
                    allowed,
                    message,
                }
            })
            .collect();
        Ok(Response::new(AuthorizePushResponse {
            allowed: verdicts.iter().all(|v| v.allowed),
            verdicts,
        }))
    }

    async fn report_push(
        &self,
        request: Request<ReportPushRequest>,
    ) -> Result<Response<ReportPushResponse>, Status> {
        if self.fail_reports {
            return Err(Status::unavailable("store is shutting down"));
        }
        let request = request.into_inner();
        if request.updates.iter().any(|u| u.ref_name.contains("slow")) {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        self.reported.lock().expect("lock").push(request);
        Ok(Response::new(ReportPushResponse {
            result: Some(ProcessResult {
                states_released: 1,
                ..Default::default()
            }),
            messages: vec![
                "Released 1 state event.".to_owned(),
                "Synced 0 repositories.".to_owned(),
            ],
        }))
    }
}

/// How the hooks directory is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// As graspd lays it out: `pre-receive`/`post-receive` are the fast hook, which hands
    /// anything unusual to `grasp-hook` (a link to the full hook) beside it.
    Fast,
    /// `pre-receive`/`post-receive` link to the full hook.
    Full,
}

/// The fast hook built by build.rs; empty on targets without one.
const FAST_HOOK: &str = env!("GRASP_HOOK_FAST");

/// Runs each named test (an `async fn(Layout)`) once per layout, as `<name>::fast` and
/// `<name>::full`; the fast run is skipped, saying so, where there is no fast hook.
macro_rules! layouts {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn full() {
                    super::$name(super::Layout::Full).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn fast() {
                    if super::has_fast_hook() {
                        super::$name(super::Layout::Fast).await;
                    }
                }
            }
        )*
    };
}

/// A scratch world: a bare-looking repository whose git config points at the fake daemon's
/// socket, a spool directory and a hooks directory of links to the binary, as graspd sets up.
struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
    repo: PathBuf,
    socket: PathBuf,
    spool: PathBuf,
    layout: Layout,
}

impl World {
    fn new(layout: Layout) -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().canonicalize().expect("canonical");
        let repo = root.join("repo.git");
        std::fs::create_dir_all(repo.join("objects")).expect("objects");
        std::fs::write(repo.join("HEAD"), "ref: refs/heads/main\n").expect("HEAD");
        let socket = root.join("graspd.sock");
        let spool = root.join("spool");
        std::fs::write(
            repo.join("config"),
            format!(
                "[core]\n\tbare = true\n[graspd]\n\tsocket = {}\n\tspool = {}\n",
                socket.display(),
                spool.display()
            ),
        )
        .expect("config");
        let hooks = root.join("hooks");
        std::fs::create_dir(&hooks).expect("hooks");
        let target = match layout {
            Layout::Full => PathBuf::from(env!("CARGO_BIN_EXE_grasp-hook")),
            Layout::Fast => {
                std::fs::copy(FAST_HOOK, hooks.join("grasp-hook-fast")).expect("copy the fast hook");
                symlink(env!("CARGO_BIN_EXE_grasp-hook"), hooks.join("grasp-hook")).expect("link");
                PathBuf::from("grasp-hook-fast")
            }
        };
        for hook in ["pre-receive", "post-receive"] {
            symlink(&target, hooks.join(hook)).expect("link");
        }
        World {
            _dir: dir,
            root,
            repo,
            socket,
            spool,
            layout,
        }
    }

    /// The binary an operator would run by hand in this layout.
    fn binary(&self) -> PathBuf {
        match self.layout {
            Layout::Full => PathBuf::from(env!("CARGO_BIN_EXE_grasp-hook")),
            Layout::Fast => self.hook("grasp-hook-fast"),
        }
    }

    fn hook(&self, name: &str) -> PathBuf {
        self.root.join("hooks").join(name)
    }

    /// Starts `daemon` on the world's socket; it runs until the test's runtime ends.
    fn serve(&self, daemon: FakeDaemon) {
        let listener = tokio::net::UnixListener::bind(&self.socket).expect("bind");
        let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(HookServiceServer::new(daemon))
                .serve_with_incoming(incoming),
        );
    }

    /// Runs `program args` the way git runs a hook: in the repository, `GIT_DIR=.`.
    async fn run(&self, program: &Path, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
        run_in(
            &self.repo,
            program,
            args,
            &[&[("GIT_DIR", ".")], env].concat(),
            stdin,
        )
        .await
    }

    fn spooled(&self) -> Vec<ReportPushRequest> {
        let Ok(entries) = std::fs::read_dir(&self.spool) else {
            return Vec::new();
        };
        entries
            .map(|e| e.expect("entry").path())
            .inspect(|p| assert!(p.to_string_lossy().ends_with(".report"), "stray file {p:?}"))
            .map(|p| ReportPushRequest::decode(&std::fs::read(p).expect("read")[..]).expect("decodes"))
            .collect()
    }
}

async fn run_in(cwd: &Path, program: &Path, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .current_dir(cwd)
        .env_remove("GIT_DIR")
        .env_remove("GRASPD_SOCKET")
        .env_remove("GRASPD_SPOOL")
        .env_remove("GRASP_HOOK_TIMEOUT_SECS")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // A fast hook copied into a world moments ago can still be open for writing in a child that
    // another test thread forked meanwhile (until that child execs): exec then fails with
    // ETXTBSY. Retry that, nothing else.
    let mut attempts = 0;
    let mut child = loop {
        match command.spawn() {
            Err(error) if error.raw_os_error() == Some(26) && attempts < 50 => {
                attempts += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            spawned => break spawned.expect("spawn grasp-hook"),
        }
    };
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).await.expect("write stdin");
    drop(input);
    child.wait_with_output().await.expect("wait")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn update(ref_name: &str) -> String {
    format!("{OLD} {NEW} {ref_name}\n")
}

async fn pre_receive_relays_each_verdict_and_allows_an_allowed_push(layout: Layout) {
    let world = World::new(layout);
    let daemon = FakeDaemon::default();
    world.serve(daemon.clone());

    let input = update("refs/heads/main") + &update("refs/tags/v1");
    // As git and the HTTP front set them: where the pushed objects wait, who pushed.
    let origin = [
        ("GIT_QUARANTINE_PATH", "/srv/repo.git/objects/incoming-x1"),
        ("REMOTE_ADDR", "192.0.2.7"),
    ];
    let output = world.run(&world.hook("pre-receive"), &[], &origin, &input).await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stderr(&output),
        "refs/heads/main matches the state event.\nrefs/tags/v1 matches the state event.\n"
    );
    let calls = daemon.authorized.lock().expect("lock").clone();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].repo_path, world.repo.to_string_lossy());
    assert_eq!(calls[0].updates[1].ref_name, "refs/tags/v1");
    assert_eq!(calls[0].updates[0].new_oid, NEW);
    assert_eq!(calls[0].quarantine_path, "/srv/repo.git/objects/incoming-x1");
    assert_eq!(calls[0].client_address, "192.0.2.7");
}

async fn pre_receive_refuses_when_graspd_refuses_one_ref(layout: Layout) {
    let world = World::new(layout);
    world.serve(FakeDaemon::default());

    let input = update("refs/heads/main") + &update("refs/heads/denied");
    let output = world.run(&world.hook("pre-receive"), &[], &[], &input).await;

    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("refs/heads/denied is not in the maintainers' state event.\n"));
}

async fn pre_receive_fails_closed_when_graspd_is_down(layout: Layout) {
    let world = World::new(layout);
    let output = world
        .run(&world.hook("pre-receive"), &[], &[], &update("refs/heads/main"))
        .await;

    assert_eq!(output.status.code(), Some(1));
    let said = stderr(&output);
    assert!(
        said.starts_with(&format!(
            "grasp-hook: cannot reach graspd at {}: ",
            world.socket.display()
        )),
        "{said}"
    );
    assert!(said.trim_end().ends_with("; push refused"), "{said}");
}

async fn pre_receive_fails_closed_when_graspd_does_not_answer_in_time(layout: Layout) {
    let world = World::new(layout);
    world.serve(FakeDaemon::default());
    let output = world
        .run(
            &world.hook("pre-receive"),
            &[],
            &[("GRASP_HOOK_TIMEOUT_SECS", "1")],
            &update("refs/heads/slow"),
        )
        .await;

    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("no answer within 1 s; push refused"),
        "{}",
        stderr(&output)
    );
}

async fn pre_receive_refuses_malformed_input_without_asking_graspd(layout: Layout) {
    let world = World::new(layout);
    let daemon = FakeDaemon::default();
    world.serve(daemon.clone());
    let input = update("refs/heads/main") + &format!("{OLD} {NEW} main\n");
    let output = world.run(&world.hook("pre-receive"), &[], &[], &input).await;

    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        "grasp-hook: line 2: ref name \"main\" does not start with refs/\n"
    );
    assert!(daemon.authorized.lock().expect("lock").is_empty());
}

async fn pre_receive_refuses_when_no_socket_is_configured(layout: Layout) {
    let world = World::new(layout);
    std::fs::write(world.repo.join("config"), "[core]\n\tbare = true\n").expect("config");
    let output = world
        .run(&world.hook("pre-receive"), &[], &[], &update("refs/heads/main"))
        .await;

    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        "grasp-hook: no graspd socket configured (GRASPD_SOCKET or git config graspd.socket); push refused\n"
    );
}

async fn the_environment_socket_wins_over_git_config(layout: Layout) {
    let world = World::new(layout);
    world.serve(FakeDaemon::default());
    std::fs::write(
        world.repo.join("config"),
        "[graspd]\n\tsocket = /nonexistent/graspd.sock\n",
    )
    .expect("config");
    let socket = world.socket.to_string_lossy().into_owned();
    let output = world
        .run(
            &world.hook("pre-receive"),
            &[],
            &[("GRASPD_SOCKET", &socket)],
            &update("refs/heads/main"),
        )
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

async fn post_receive_relays_graspds_messages(layout: Layout) {
    let world = World::new(layout);
    let daemon = FakeDaemon::default();
    world.serve(daemon.clone());
    let output = world
        .run(&world.hook("post-receive"), &[], &[], &update("refs/heads/main"))
        .await;

    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        stderr(&output),
        "Released 1 state event.\nSynced 0 repositories.\n"
    );
    assert_eq!(
        daemon.reported.lock().expect("lock")[0].repo_path,
        world.repo.to_string_lossy()
    );
    assert!(world.spooled().is_empty());
}

async fn post_receive_spools_the_report_when_graspd_is_down(layout: Layout) {
    let world = World::new(layout);
    let output = world
        .run(&world.hook("post-receive"), &[], &[], &update("refs/heads/main"))
        .await;

    assert_eq!(output.status.code(), Some(0));
    let said = stderr(&output);
    assert!(said.starts_with("grasp-hook: graspd unreachable ("), "{said}");
    assert!(
        said.ends_with(&format!(
            "); push recorded in {} and will be processed when graspd is back\n",
            world.spool.display()
        )),
        "{said}"
    );
    let spooled = world.spooled();
    assert_eq!(spooled.len(), 1);
    assert_eq!(spooled[0].repo_path, world.repo.to_string_lossy());
    assert_eq!(spooled[0].updates[0].ref_name, "refs/heads/main");
}

async fn post_receive_spools_the_report_when_graspd_answers_an_error(layout: Layout) {
    let world = World::new(layout);
    world.serve(FakeDaemon {
        fail_reports: true,
        ..FakeDaemon::default()
    });
    let output = world
        .run(&world.hook("post-receive"), &[], &[], &update("refs/heads/main"))
        .await;

    assert_eq!(output.status.code(), Some(0));
    assert!(
        stderr(&output).contains("store is shutting down"),
        "{}",
        stderr(&output)
    );
    assert_eq!(world.spooled().len(), 1);
}

async fn post_receive_never_fails_the_push(layout: Layout) {
    let world = World::new(layout);
    std::fs::write(world.repo.join("config"), "").expect("config");
    let output = world
        .run(&world.hook("post-receive"), &[], &[], &update("refs/heads/main"))
        .await;
    assert_eq!(output.status.code(), Some(0));
    assert!(
        stderr(&output).contains("no spool directory configured"),
        "{}",
        stderr(&output)
    );

    let output = world
        .run(&world.hook("post-receive"), &[], &[], "garbage\n")
        .await;
    assert_eq!(output.status.code(), Some(0));
    assert!(
        stderr(&output).starts_with("grasp-hook: line 1: "),
        "{}",
        stderr(&output)
    );
}

async fn check_reports_the_daemon_and_whether_it_knows_the_repository(layout: Layout) {
    let world = World::new(layout);
    world.serve(FakeDaemon::default());
    let binary = &world.binary();

    // In the repository, found without GIT_DIR.
    let output = run_in(&world.repo, binary, &["check"], &[], "").await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!(
            "ok: graspd 0.0.0-test at {}; checked {}\n",
            world.socket.display(),
            world.repo.display()
        )
    );

    // Outside any repository: the socket must come from the environment.
    let socket = world.socket.to_string_lossy().into_owned();
    let output = run_in(&world.root, binary, &["check"], &[("GRASPD_SOCKET", &socket)], "").await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).ends_with("; no repository given\n"));

    // A repository the daemon does not serve.
    let other = world.root.join("other.git");
    std::fs::create_dir_all(other.join("objects")).expect("objects");
    std::fs::write(other.join("HEAD"), "ref: refs/heads/main\n").expect("HEAD");
    let output = run_in(&other, binary, &["check"], &[("GRASPD_SOCKET", &socket)], "").await;
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("does not serve"), "{}", stderr(&output));
}

async fn help_and_unknown_modes_print_usage_and_exit_2(layout: Layout) {
    let world = World::new(layout);
    let binary = &world.binary();
    for args in [&["--help"][..], &["update"], &[]] {
        let output = run_in(&world.root, binary, args, &[], "").await;
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(stderr(&output).starts_with("usage: grasp-hook"), "{args:?}");
    }
}

/// Something that is not graspd on the socket: it reads a little, answers garbage and hangs up.
fn serve_garbage(world: &World) {
    let listener = tokio::net::UnixListener::bind(&world.socket).expect("bind");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 64];
            let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await;
            let _ = stream
                .write_all(b"HTTP/1.1 400 Bad Request\r\n\r\nnot grpc")
                .await;
        }
    });
}

async fn a_garbage_answer_refuses_the_push_and_spools_the_report(layout: Layout) {
    let world = World::new(layout);
    serve_garbage(&world);
    let output = world
        .run(&world.hook("pre-receive"), &[], &[], &update("refs/heads/main"))
        .await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with(&format!(
            "grasp-hook: cannot reach graspd at {}: ",
            world.socket.display()
        )),
        "{}",
        stderr(&output)
    );
    let output = world
        .run(&world.hook("post-receive"), &[], &[], &update("refs/heads/main"))
        .await;
    assert_eq!(output.status.code(), Some(0));
    let spooled = world.spooled();
    assert_eq!(spooled.len(), 1, "{}", stderr(&output));
    assert_eq!(spooled[0].updates[0].ref_name, "refs/heads/main");
}

// Each test above, run once with the hooks directory as graspd lays it out (the fast hook in
// front, falling back to the full one) and once with the full hook alone.
layouts! {
    pre_receive_relays_each_verdict_and_allows_an_allowed_push,
    pre_receive_refuses_when_graspd_refuses_one_ref,
    pre_receive_fails_closed_when_graspd_is_down,
    pre_receive_fails_closed_when_graspd_does_not_answer_in_time,
    pre_receive_refuses_malformed_input_without_asking_graspd,
    pre_receive_refuses_when_no_socket_is_configured,
    the_environment_socket_wins_over_git_config,
    post_receive_relays_graspds_messages,
    post_receive_spools_the_report_when_graspd_is_down,
    post_receive_spools_the_report_when_graspd_answers_an_error,
    post_receive_never_fails_the_push,
    check_reports_the_daemon_and_whether_it_knows_the_repository,
    help_and_unknown_modes_print_usage_and_exit_2,
    a_garbage_answer_refuses_the_push_and_spools_the_report,
}

// The fast hook's own behaviour.

/// Whether this target has a fast hook; says the test is skipped when not.
fn has_fast_hook() -> bool {
    if FAST_HOOK.is_empty() {
        eprintln!("skipped: no fast hook on this target");
    }
    !FAST_HOOK.is_empty()
}

/// A world in the fast layout; `None` on a target without a fast hook.
fn fast_world() -> Option<World> {
    has_fast_hook().then(|| World::new(Layout::Fast))
}

/// A fast-layout world whose `grasp-hook` link is gone: whatever still works is the fast hook
/// alone.
fn world_without_full_hook() -> Option<World> {
    let world = fast_world()?;
    std::fs::remove_file(world.hook("grasp-hook")).expect("unlink");
    Some(world)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fast_hook_answers_plain_pushes_by_itself() {
    let Some(world) = world_without_full_hook() else {
        return;
    };
    let daemon = FakeDaemon::default();
    world.serve(daemon.clone());
    // As graspd's front and nginx give it (the fast hook reads no git config).
    let socket = world.socket.to_string_lossy().into_owned();
    let env = [
        ("GRASPD_SOCKET", socket.as_str()),
        ("GIT_QUARANTINE_PATH", "/srv/repo.git/objects/incoming-x1"),
        ("REMOTE_ADDR", "192.0.2.7"),
    ];

    let input = update("refs/heads/main") + &update("refs/heads/denied");
    let output = world.run(&world.hook("pre-receive"), &[], &env, &input).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(
        stderr(&output),
        "refs/heads/main matches the state event.\nrefs/heads/denied is not in the maintainers' state event.\n"
    );

    let output = world
        .run(&world.hook("pre-receive"), &[], &env, &update("refs/heads/main"))
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    let output = world
        .run(&world.hook("post-receive"), &[], &env, &update("refs/heads/main"))
        .await;
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        stderr(&output),
        "Released 1 state event.\nSynced 0 repositories.\n"
    );

    let authorized = daemon.authorized.lock().expect("lock").clone();
    assert_eq!(authorized.len(), 2);
    assert_eq!(authorized[0].repo_path, world.repo.to_string_lossy());
    assert_eq!(authorized[0].updates[1].ref_name, "refs/heads/denied");
    assert_eq!(authorized[0].updates[0].old_oid, OLD);
    assert_eq!(authorized[0].quarantine_path, "/srv/repo.git/objects/incoming-x1");
    assert_eq!(authorized[0].client_address, "192.0.2.7");
    let reported = daemon.reported.lock().expect("lock").clone();
    assert_eq!(reported.len(), 1);
    assert_eq!(reported[0].updates[0].new_oid, NEW);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_full_hook_to_fall_back_to_pre_receive_still_fails_closed() {
    let Some(world) = world_without_full_hook() else {
        return;
    };
    // No daemon: the fast hook hands over, and the hand-over fails.
    let output = world
        .run(&world.hook("pre-receive"), &[], &[], &update("refs/heads/main"))
        .await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with("grasp-hook: cannot run the full hook "),
        "{}",
        stderr(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_too_large_for_the_fast_hook_goes_whole_to_the_full_hook() {
    let Some(world) = fast_world() else { return };
    let daemon = FakeDaemon::default();
    world.serve(daemon.clone());
    // About 110 KiB of input: more than the fast hook reads, so stdin is replayed to the full
    // hook from memory followed by the unread rest.
    let input: String = (0..1000).map(|i| update(&format!("refs/tags/t{i:04}"))).collect();
    let output = world.run(&world.hook("pre-receive"), &[], &[], &input).await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        &stderr(&output)[..200.min(stderr(&output).len())]
    );
    let authorized = daemon.authorized.lock().expect("lock").clone();
    assert_eq!(authorized.len(), 1);
    assert_eq!(authorized[0].updates.len(), 1000);
    assert_eq!(authorized[0].updates[999].ref_name, "refs/tags/t0999");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_fast_hook_times_out_the_full_hook_spools_after_one_second_more() {
    let Some(world) = fast_world() else { return };
    world.serve(FakeDaemon::default());
    let socket = world.socket.to_string_lossy().into_owned();
    let output = world
        .run(
            &world.hook("post-receive"),
            &[],
            &[("GRASP_HOOK_TIMEOUT_SECS", "2"), ("GRASPD_SOCKET", &socket)],
            &update("refs/heads/slow"),
        )
        .await;
    assert_eq!(output.status.code(), Some(0));
    // The full hook was given one second, not a second full deadline, and then spooled.
    assert!(
        stderr(&output).contains("no answer within 1 s"),
        "{}",
        stderr(&output)
    );
    assert_eq!(world.spooled().len(), 1);
}
