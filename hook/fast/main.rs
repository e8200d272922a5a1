//! `grasp-hook-fast`: the pre-receive and post-receive hook graspd installs, for the common case.
//!
//! git starts a receive hook twice per push, and a program linked with glibc spends most of its
//! short life starting up (see `sys.rs`). This one has no C library and no allocator: it reads
//! git's ref updates, finds the daemon's socket (the environment graspd's front or nginx gives it),
//! makes the one `HookService` call over HTTP/2 itself, prints the daemon's messages and exits,
//! in a fraction of the time.
//!
//! It is deliberately partial. Whenever anything is outside the plain path (arguments, unusual
//! input or config, a large push, the daemon unreachable or answering with an error), it hands
//! the run to the full `grasp-hook`, which sits next to it in the hooks directory: stdin is
//! replayed from memory and the full hook decides, words every error, fails closed and spools,
//! exactly as if it had been started first. So the fast hook can only ever be faster, never
//! different. Built by `hook/build.rs` with `rustc` directly (it needs `panic = "abort"` and no
//! start files, which the workspace's profiles cannot give one binary).

#![no_std]
#![no_main]

mod huffman;
// The rules on object ids and ref names the daemon and grasp-hook apply (crate grasp-values),
// included as a module: the fast hook is built without cargo.
#[allow(dead_code)]
#[path = "../../values/src/rules.rs"]
mod rules;
mod sys;
mod wire;

use core::arch::naked_asm;

use wire::{Out, Sure, Unsure, Update};

/// Most ref updates the fast path carries (a bigger push exceeds one HTTP/2 window anyway).
const MAX_UPDATES: usize = 512;
/// Default deadline for connecting and calling, as the full hook's.
const DEFAULT_TIMEOUT_SECS: i64 = 30;

const STDIN_BYTES: usize = 64 * 1024;
const MESSAGE_BYTES: usize = 64 * 1024;
const REQUEST_BYTES: usize = 80 * 1024;
const READ_BYTES: usize = 64 * 1024;
const BLOCK_BYTES: usize = 64 * 1024;
const SCRATCH_BYTES: usize = 2 * BLOCK_BYTES;
const ANSWER_BYTES: usize = 1024 * 1024;
const ARENA_BYTES: usize =
    STDIN_BYTES + MESSAGE_BYTES + REQUEST_BYTES + READ_BYTES + BLOCK_BYTES + SCRATCH_BYTES + ANSWER_BYTES;

/// All working memory, zero pages until touched.
static mut ARENA: [u8; ARENA_BYTES] = [0; ARENA_BYTES];

/// The process's entry point: hands the initial stack (argc, argv, envp) to [`start`].
///
/// # Safety
/// Only the kernel calls it, once, with the initial process stack.
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _start() -> ! {
    naked_asm!("mov rdi, rsp", "and rsp, -16", "call {start}", "ud2", start = sym start)
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // Unreachable by design; if it happens, pre-receive must not allow the push.
    sys::write_all(sys::STDERR, b"grasp-hook: internal error in the fast hook\n");
    sys::exit(1)
}

/// What the kernel put on the stack.
struct Process {
    argc: usize,
    argv: *const *const u8,
    envp: *const *const u8,
}

impl Process {
    fn arg(&self, index: usize) -> Option<&'static [u8]> {
        if index >= self.argc {
            return None;
        }
        // SAFETY: argv holds argc NUL-terminated strings that live as long as the process.
        Some(unsafe { core::ffi::CStr::from_ptr((*self.argv.add(index)).cast()) }.to_bytes())
    }

    /// The value of environment variable `name`.
    fn env(&self, name: &[u8]) -> Option<&'static [u8]> {
        let mut entry = self.envp;
        loop {
            // SAFETY: envp is a NULL-terminated array of NUL-terminated strings.
            let pointer = unsafe { *entry };
            if pointer.is_null() {
                return None;
            }
            // SAFETY: as above.
            let text = unsafe { core::ffi::CStr::from_ptr(pointer.cast()) }.to_bytes();
            if let Some(value) = text.strip_prefix(name).and_then(|rest| rest.strip_prefix(b"=")) {
                return Some(value);
            }
            // SAFETY: not past the terminating NULL.
            entry = unsafe { entry.add(1) };
        }
    }
}

extern "C" fn start(stack: *const usize) -> ! {
    // SAFETY: the System V ABI's initial stack: argc, argv[argc], NULL, envp..., NULL.
    let process = unsafe {
        let argc = *stack;
        let argv = stack.add(1).cast::<*const u8>();
        Process {
            argc,
            argv,
            envp: argv.add(argc + 1),
        }
    };
    sys::exit(run(&process))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    PreReceive,
    PostReceive,
}

/// Why the call did not produce an answer.
enum Failure {
    /// Anything but a timeout: the full hook tries again and says what is wrong.
    Unsure,
    /// No answer within the deadline.
    TimedOut,
}

impl From<Unsure> for Failure {
    fn from(_: Unsure) -> Self {
        Failure::Unsure
    }
}

/// The working memory, cut into its parts.
struct Buffers {
    message: &'static mut [u8],
    request: &'static mut [u8],
    read: &'static mut [u8],
    io: wire::Io<'static>,
}

impl Buffers {
    /// Takes the arena (stdin's buffer, and the rest); called once.
    fn take() -> (&'static mut [u8], Buffers) {
        // SAFETY: called once, from the only thread, so this is the only reference to ARENA.
        // (Through a raw pointer: a direct `&mut ARENA` is what the static_mut_refs lint forbids.)
        #[allow(clippy::deref_addrof)]
        let arena: &'static mut [u8] = unsafe { &mut *(&raw mut ARENA) };
        let (stdin, rest) = arena.split_at_mut(STDIN_BYTES);
        let (message, rest) = rest.split_at_mut(MESSAGE_BYTES);
        let (request, rest) = rest.split_at_mut(REQUEST_BYTES);
        let (read, rest) = rest.split_at_mut(READ_BYTES);
        let (block, rest) = rest.split_at_mut(BLOCK_BYTES);
        let (scratch, answer) = rest.split_at_mut(SCRATCH_BYTES);
        let buffers = Buffers {
            message,
            request,
            read,
            io: wire::Io {
                block,
                scratch,
                answer,
            },
        };
        (stdin, buffers)
    }
}

fn run(process: &Process) -> i32 {
    let (stdin, buffers) = Buffers::take();
    let mode = match (process.argc, process.arg(0).map(file_name)) {
        (1, Some(b"pre-receive")) => Mode::PreReceive,
        (1, Some(b"post-receive")) => Mode::PostReceive,
        _ => return full(process, None, None, None),
    };
    let (filled, complete) = read_all(sys::STDIN, stdin);
    let input: &[u8] = &stdin[..filled];
    if !complete {
        return full(process, Some(mode), Some(input), None);
    }
    match fast(process, mode, input, buffers) {
        Ok(code) => code,
        // The daemon took the whole deadline already: the full hook gets one second, enough to
        // find it still silent and spool the report, rather than a second full wait.
        Err(Failure::TimedOut) => full(process, Some(mode), Some(input), Some(SHORT_TIMEOUT)),
        Err(Failure::Unsure) => full(process, Some(mode), Some(input), None),
    }
}

fn file_name(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|b| *b == b'/') {
        Some(at) => &path[at + 1..],
        None => path,
    }
}

/// Reads `fd` into `buf` until its end: (bytes read, whether that was all of it). An error
/// counts as not all.
fn read_all(fd: i32, buf: &mut [u8]) -> (usize, bool) {
    let mut filled = 0;
    while filled < buf.len() {
        let read = sys::read(fd, &mut buf[filled..]);
        if read == -sys::EAGAIN {
            let _ = sys::wait(fd, sys::READABLE, 1000);
            continue;
        }
        if read < 0 {
            return (filled, false);
        }
        if read == 0 {
            return (filled, true);
        }
        filled += read as usize;
    }
    (filled, false)
}

/// Writes one line to stderr (git relays it to the pusher as `remote: ...`). A failed write is
/// ignored: it must not change the verdict.
fn say(parts: &[&[u8]]) {
    let mut line = [0u8; 4096];
    let mut out = Out::new(&mut line);
    for part in parts {
        if out.put(part).is_err() {
            // Too long for one write: send what we have, then the rest directly.
            sys::write_all(sys::STDERR, out.bytes());
            out = Out::new(&mut []);
            sys::write_all(sys::STDERR, part);
        }
    }
    sys::write_all(sys::STDERR, out.bytes());
    sys::write_all(sys::STDERR, b"\n");
}

/// The whole fast path: the answer's exit status, or why the full hook must take over.
fn fast(process: &Process, mode: Mode, input: &[u8], buffers: Buffers) -> Result<i32, Failure> {
    let Buffers {
        message,
        request,
        read,
        io,
    } = buffers;
    let mut slots = [Update::default(); MAX_UPDATES];
    let count = wire::parse_updates(input, &mut slots)?;
    let updates = &slots[..count];

    // The repository: git runs hooks in it with GIT_DIR=. (the full hook handles other forms).
    if !matches!(process.env(b"GIT_DIR"), None | Some(b"" | b".")) {
        return Err(Failure::Unsure);
    }
    let mut cwd = [0u8; 4096];
    let repo = sys::getcwd(&mut cwd).ok_or(Unsure)?;

    let socket = socket_path(process)?;
    let timeout_secs = match process.env(b"GRASP_HOOK_TIMEOUT_SECS") {
        None => DEFAULT_TIMEOUT_SECS,
        Some(text) => parse_secs(text).ok_or(Unsure)?,
    };

    let mut message = Out::new(message);
    wire::push_request(&mut message, repo, updates)?;
    if mode == Mode::PreReceive {
        let quarantine = process.env(b"GIT_QUARANTINE_PATH").unwrap_or_default();
        let address = process.env(b"REMOTE_ADDR").unwrap_or_default();
        wire::push_origin(&mut message, quarantine, address)?;
    }
    let method: &[u8] = match mode {
        Mode::PreReceive => b"AuthorizePush",
        Mode::PostReceive => b"ReportPush",
    };
    let mut request = Out::new(request);
    wire::call(&mut request, method, message.bytes())?;

    let answer = match exchange(socket, request.bytes(), timeout_secs * 1000, read, io) {
        Ok(answer) => answer,
        Err(Failure::TimedOut) if mode == Mode::PreReceive => {
            let mut secs = [0u8; 20];
            say(&[
                b"grasp-hook: cannot reach graspd at ",
                socket,
                b": no answer within ",
                decimal(timeout_secs as u64, &mut secs),
                b" s; push refused",
            ]);
            return Ok(1);
        }
        Err(failure) => return Err(failure),
    };
    match mode {
        Mode::PreReceive => {
            let mut said_anything = false;
            let allowed = wire::authorize_response(answer, |line| {
                say(&[line.as_bytes()]);
                said_anything = true;
            })?;
            if allowed {
                Ok(0)
            } else {
                if !said_anything {
                    say(&[b"grasp-hook: graspd refused the push"]);
                }
                Ok(1)
            }
        }
        Mode::PostReceive => {
            wire::report_response(answer, |line| say(&[line.as_bytes()]))?;
            Ok(0)
        }
    }
}

/// A positive whole number of seconds, as the full hook accepts it.
fn parse_secs(text: &[u8]) -> Option<i64> {
    if text.is_empty() || text.len() > 9 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = text
        .iter()
        .fold(0i64, |value, digit| value * 10 + i64::from(digit - b'0'));
    (value > 0).then_some(value)
}

fn decimal(mut value: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return &buf[at..];
        }
    }
}

/// GRASPD_SOCKET, which git http-backend passes on from graspd's front (or nginx). Without it,
/// the full hook takes over: it also reads the repository's git config, for pushes that reach
/// the repository another way.
fn socket_path(process: &Process) -> Sure<&'static [u8]> {
    process
        .env(b"GRASPD_SOCKET")
        .filter(|v| !v.is_empty())
        .ok_or(Unsure)
}

/// Connects to `socket`, sends `request` and reads until the call's stream ends, within
/// `timeout_ms`. Returns the gRPC message when the call succeeded.
fn exchange(
    socket: &[u8],
    request: &[u8],
    timeout_ms: i64,
    read: &mut [u8],
    mut io: wire::Io<'static>,
) -> Result<&'static [u8], Failure> {
    let deadline = sys::now_ms() + timeout_ms;
    let fd = sys::connect_unix(socket);
    if fd < 0 {
        return Err(Failure::Unsure);
    }
    let fd = fd as i32;
    let result = talk(fd, request, deadline, read, &mut io);
    sys::close(fd);
    let call = result?;
    let wire::Io { answer, .. } = io;
    Ok(call.message(answer)?)
}

/// Waits until `fd` is ready for `events` (see [`sys::wait`]), retrying after signals, until
/// `deadline`.
fn ready(fd: i32, events: i16, deadline: i64) -> Result<(), Failure> {
    loop {
        let left = deadline - sys::now_ms();
        if left <= 0 {
            return Err(Failure::TimedOut);
        }
        match sys::wait(fd, events, left) {
            sys::Ready::Yes => return Ok(()),
            sys::Ready::Interrupted | sys::Ready::No => {}
            sys::Ready::Failed => return Err(Failure::Unsure),
        }
    }
}

fn send(fd: i32, bytes: &[u8], deadline: i64) -> Result<(), Failure> {
    let mut rest = bytes;
    while !rest.is_empty() {
        ready(fd, sys::WRITABLE, deadline)?;
        let written = sys::send(fd, rest);
        if written == -sys::EAGAIN {
            continue;
        }
        if written <= 0 {
            return Err(Failure::Unsure);
        }
        rest = &rest[written as usize..];
    }
    Ok(())
}

fn talk(
    fd: i32,
    request: &[u8],
    deadline: i64,
    buf: &mut [u8],
    io: &mut wire::Io,
) -> Result<wire::Call, Failure> {
    send(fd, request, deadline)?;
    let mut call = wire::Call::default();
    let (mut start, mut filled) = (0, 0);
    let read_len = buf.len();
    while !call.ended() {
        if start == filled {
            start = 0;
            filled = 0;
        } else if filled == read_len {
            buf.copy_within(start..filled, 0);
            filled -= start;
            start = 0;
        }
        if filled == read_len {
            return Err(Failure::Unsure);
        }
        ready(fd, sys::READABLE, deadline)?;
        let read = sys::read(fd, &mut buf[filled..]);
        if read == -sys::EAGAIN {
            continue;
        }
        if read <= 0 {
            return Err(Failure::Unsure);
        }
        filled += read as usize;
        while let Some((frame, used)) = wire::next_frame(&buf[start..filled])? {
            start += used;
            let mut reply = [0u8; 17];
            let reply_len = call.on_frame(&frame, io, &mut reply)?;
            if reply_len > 0 {
                send(fd, &reply[..reply_len], deadline)?;
            }
            if call.ended() {
                break;
            }
        }
    }
    Ok(call)
}

/// The environment entry that shortens the full hook's deadline after this one timed out.
const SHORT_TIMEOUT: &[u8] = b"GRASP_HOOK_TIMEOUT_SECS=1\0";

/// Room for the environment handed to the full hook when an entry is replaced.
const MAX_ENV: usize = 1024;
static mut ENV: [*const u8; MAX_ENV] = [core::ptr::null(); MAX_ENV];

/// Hands the run to the full `grasp-hook` next to this binary, with stdin replayed from `input`
/// (what was read) followed by whatever was not read yet, and `GRASP_HOOK_TIMEOUT_SECS` replaced
/// by `timeout` when given. Returns only if that fails.
fn full(process: &Process, mode: Option<Mode>, input: Option<&[u8]>, timeout: Option<&'static [u8]>) -> i32 {
    let failed = match mode {
        Some(Mode::PreReceive) => 1,
        Some(Mode::PostReceive) => 0,
        None => 2,
    };
    let consequence: &[u8] = match mode {
        Some(Mode::PreReceive) => b"; push refused",
        Some(Mode::PostReceive) => b"; the push landed but graspd was not told about it",
        None => b"",
    };
    if let Some(input) = input
        && !replay_stdin(input)
    {
        say(&[
            b"grasp-hook: cannot pass the ref updates to the full hook",
            consequence,
        ]);
        return failed;
    }
    let mut exe = [0u8; 4096];
    let mut path = [0u8; 4200];
    let mut out = Out::new(&mut path);
    // Next to this binary; without /proc, next to the name git ran (the hooks directory).
    let exe = sys::readlink(b"/proc/self/exe\0", &mut exe).or(process.arg(0));
    let located = exe.and_then(|exe| {
        let dir = &exe[..exe.iter().rposition(|b| *b == b'/')?];
        out.put(dir).ok()?;
        out.put(b"/grasp-hook\0").ok()
    });
    if located.is_none() {
        say(&[
            b"grasp-hook: cannot find the full hook next to the fast hook",
            consequence,
        ]);
        return failed;
    }
    let len = out.len();
    let envp = match timeout {
        Some(entry) => environment_with(process, entry),
        None => process.envp,
    };
    // SAFETY: the path is NUL-terminated; argv is the kernel's own array and envp either that or
    // a NULL-terminated copy of its pointers plus a static NUL-terminated entry.
    let error = unsafe { sys::execve(&path[..len], process.argv, envp) };
    let mut errno = [0u8; 20];
    say(&[
        b"grasp-hook: cannot run the full hook ",
        &path[..len - 1],
        b" (errno ",
        decimal(error.unsigned_abs() as u64, &mut errno),
        b")",
        consequence,
    ]);
    failed
}

/// The process's environment with `entry` (`NAME=value\0`) in place of any `NAME=` entry; the
/// original when it does not fit.
fn environment_with(process: &Process, entry: &'static [u8]) -> *const *const u8 {
    let Some(name_end) = entry.iter().position(|b| *b == b'=') else {
        return process.envp;
    };
    let prefix = &entry[..=name_end];
    // SAFETY: only this function touches ENV, once, from the only thread.
    #[allow(clippy::deref_addrof)]
    let env: &mut [*const u8; MAX_ENV] = unsafe { &mut *(&raw mut ENV) };
    let mut count = 0;
    let mut from = process.envp;
    loop {
        // SAFETY: envp is a NULL-terminated array of NUL-terminated strings.
        let pointer = unsafe { *from };
        if pointer.is_null() {
            break;
        }
        // SAFETY: as above.
        let text = unsafe { core::ffi::CStr::from_ptr(pointer.cast()) }.to_bytes();
        if !text.starts_with(prefix) {
            if count + 2 >= MAX_ENV {
                return process.envp;
            }
            env[count] = pointer;
            count += 1;
        }
        // SAFETY: not past the terminating NULL.
        from = unsafe { from.add(1) };
    }
    env[count] = entry.as_ptr();
    env[count + 1] = core::ptr::null();
    env.as_ptr()
}

/// Makes stdin an in-memory file holding `input` and then the rest of the current stdin.
fn replay_stdin(input: &[u8]) -> bool {
    let fd = sys::memfd();
    if fd < 0 {
        return false;
    }
    let fd = fd as i32;
    let mut ok = sys::write_all(fd, input);
    let mut chunk = [0u8; 16 * 1024];
    while ok {
        let read = sys::read(sys::STDIN, &mut chunk);
        if read == 0 {
            break;
        }
        if read == -sys::EAGAIN {
            // A non-blocking stdin: wait for more rather than take this for the end.
            let _ = sys::wait(sys::STDIN, sys::READABLE, 1000);
            continue;
        }
        // An error is not the end of the input: a shortened list would be judged as the whole.
        ok = read > 0 && sys::write_all(fd, &chunk[..read as usize]);
    }
    ok = ok && sys::rewind(fd) == 0 && sys::dup2(fd, sys::STDIN) == 0;
    sys::close(fd);
    ok
}
