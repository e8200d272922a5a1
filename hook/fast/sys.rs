//! The few Linux system calls the fast hook makes, on x86_64, without a C library.
//!
//! Starting a program linked with glibc costs about 0.6 ms here before `main` runs (the dynamic
//! loader, and glibc probing the CPU with `cpuid`, which traps to the hypervisor on virtual
//! machines); git starts the hook twice per push. This binary has no C library at all: it
//! starts in about 0.1 ms. Also the memory functions the compiler expects.

use core::arch::asm;

pub const STDIN: i32 = 0;
pub const STDERR: i32 = 2;
const EINTR: isize = 4;
pub const EAGAIN: isize = 11;
const EINPROGRESS: isize = 115;
pub const READABLE: i16 = 0x1; // POLLIN
pub const WRITABLE: i16 = 0x4; // POLLOUT

/// A system call with up to six arguments; negative results are `-errno`.
///
/// # Safety
/// The arguments must be valid for call `number` (pointers to live memory of the right size).
unsafe fn syscall(number: usize, args: [usize; 6]) -> isize {
    let result: isize;
    // SAFETY: the caller passes arguments valid for this system call; the kernel clobbers
    // only rcx and r11.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") number as isize => result,
            in("rdi") args[0], in("rsi") args[1], in("rdx") args[2],
            in("r10") args[3], in("r8") args[4], in("r9") args[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    result
}

/// Retries a call interrupted by a signal.
fn retry(mut call: impl FnMut() -> isize) -> isize {
    loop {
        let result = call();
        if result != -EINTR {
            return result;
        }
    }
}

pub fn read(fd: i32, buf: &mut [u8]) -> isize {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
    retry(|| unsafe { syscall(0, [fd as usize, buf.as_mut_ptr() as usize, buf.len(), 0, 0, 0]) })
}

pub fn write(fd: i32, buf: &[u8]) -> isize {
    // SAFETY: the kernel reads at most `buf.len()` bytes from `buf`.
    retry(|| unsafe { syscall(1, [fd as usize, buf.as_ptr() as usize, buf.len(), 0, 0, 0]) })
}

/// Writes all of `buf`; false on an error.
pub fn write_all(fd: i32, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        let written = write(fd, buf);
        if written <= 0 {
            return false;
        }
        buf = &buf[written as usize..];
    }
    true
}

pub fn close(fd: i32) {
    // SAFETY: closing a descriptor touches no memory.
    unsafe { syscall(3, [fd as usize, 0, 0, 0, 0, 0]) };
}

/// The current directory, without its NUL; `None` when it does not fit or is gone.
pub fn getcwd(buf: &mut [u8]) -> Option<&[u8]> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
    let len = unsafe { syscall(79, [buf.as_mut_ptr() as usize, buf.len(), 0, 0, 0, 0]) };
    if len <= 1 || buf[0] != b'/' {
        return None;
    }
    Some(&buf[..len as usize - 1])
}

/// The target of the symbolic link `path` (NUL-terminated).
pub fn readlink<'a>(path: &[u8], buf: &'a mut [u8]) -> Option<&'a [u8]> {
    if path.last() != Some(&0) {
        return None;
    }
    // SAFETY: `path` is NUL-terminated; the kernel writes at most `buf.len()` bytes into `buf`.
    let len = unsafe {
        syscall(
            89,
            [
                path.as_ptr() as usize,
                buf.as_mut_ptr() as usize,
                buf.len(),
                0,
                0,
                0,
            ],
        )
    };
    if len <= 0 || len as usize >= buf.len() {
        return None;
    }
    Some(&buf[..len as usize])
}

/// A non-blocking Unix stream socket connected to `path` (at most 107 bytes, no NUL). A listener
/// whose backlog is full is an error here (`EAGAIN`), not a wait: the full hook, which the caller
/// falls back to, waits with a deadline.
pub fn connect_unix(path: &[u8]) -> isize {
    let mut address = [0u8; 110];
    if path.is_empty() || path.len() > 107 || path.contains(&0) {
        return -36; // ENAMETOOLONG (or unusable)
    }
    address[0] = 1; // AF_UNIX, little-endian u16
    address[2..2 + path.len()].copy_from_slice(path);
    const SOCK_STREAM_NONBLOCK_CLOEXEC: usize = 1 | 0o4000 | 0o2000000;
    // SAFETY: no memory is passed.
    let fd = unsafe { syscall(41, [1, SOCK_STREAM_NONBLOCK_CLOEXEC, 0, 0, 0, 0]) };
    if fd < 0 {
        return fd;
    }
    // SAFETY: `address` is a sockaddr_un of the given length.
    let result = retry(|| unsafe {
        syscall(
            42,
            [
                fd as usize,
                address.as_ptr() as usize,
                2 + path.len() + 1,
                0,
                0,
                0,
            ],
        )
    });
    if result < 0 {
        close(fd as i32);
        return if result == -EINPROGRESS { -EAGAIN } else { result };
    }
    fd
}

/// Sends on a socket without raising SIGPIPE when the peer has gone (`MSG_NOSIGNAL`).
pub fn send(fd: i32, buf: &[u8]) -> isize {
    const MSG_NOSIGNAL: usize = 0x4000;
    // SAFETY: the kernel reads at most `buf.len()` bytes from `buf`.
    retry(|| unsafe {
        syscall(
            44,
            [fd as usize, buf.as_ptr() as usize, buf.len(), MSG_NOSIGNAL, 0, 0],
        )
    })
}

/// What [`wait`] saw.
pub enum Ready {
    Yes,
    /// The time ran out.
    No,
    /// A signal arrived first; wait again.
    Interrupted,
    /// poll itself failed.
    Failed,
}

/// Waits until `fd` is ready for `events` ([`READABLE`] or [`WRITABLE`]; an error or hang-up
/// counts as ready, and the read or write then says what happened), for at most `timeout_ms`.
pub fn wait(fd: i32, events: i16, timeout_ms: i64) -> Ready {
    let mut poll_fd = [0u8; 8];
    poll_fd[..4].copy_from_slice(&fd.to_ne_bytes());
    poll_fd[4..6].copy_from_slice(&events.to_ne_bytes());
    let timeout = timeout_ms.clamp(0, i64::from(i32::MAX)) as usize;
    // SAFETY: `poll_fd` is one struct pollfd.
    match unsafe { syscall(7, [poll_fd.as_mut_ptr() as usize, 1, timeout, 0, 0, 0]) } {
        1 => Ready::Yes,
        0 => Ready::No,
        result if result == -EINTR || result == -EAGAIN => Ready::Interrupted,
        _ => Ready::Failed,
    }
}

/// Milliseconds on the monotonic clock.
pub fn now_ms() -> i64 {
    let mut time = [0i64; 2];
    // SAFETY: `time` is a struct timespec.
    unsafe { syscall(228, [1, time.as_mut_ptr() as usize, 0, 0, 0, 0]) };
    time[0] * 1000 + time[1] / 1_000_000
}

/// An anonymous in-memory file (not closed on exec).
pub fn memfd() -> isize {
    // SAFETY: the name is NUL-terminated.
    unsafe { syscall(319, [c"grasp-hook-stdin".as_ptr() as usize, 0, 0, 0, 0, 0]) }
}

pub fn rewind(fd: i32) -> isize {
    // SAFETY: touches no memory.
    unsafe { syscall(8, [fd as usize, 0, 0, 0, 0, 0]) }
}

pub fn dup2(from: i32, to: i32) -> isize {
    // SAFETY: touches no memory.
    unsafe { syscall(33, [from as usize, to as usize, 0, 0, 0, 0]) }
}

/// Replaces this process; returns only on failure.
///
/// # Safety
/// `path` is NUL-terminated; `argv` and `envp` are NULL-terminated arrays of NUL-terminated
/// strings.
pub unsafe fn execve(path: &[u8], argv: *const *const u8, envp: *const *const u8) -> isize {
    // SAFETY: per this function's contract.
    unsafe {
        syscall(
            59,
            [path.as_ptr() as usize, argv as usize, envp as usize, 0, 0, 0],
        )
    }
}

pub fn exit(code: i32) -> ! {
    loop {
        // SAFETY: exit_group touches no memory and does not return.
        unsafe { syscall(231, [code as usize, 0, 0, 0, 0, 0]) };
    }
}

// The compiler lowers copies, fills and comparisons to these; without a C library they are ours.
// Written with string instructions (or volatile reads) so they cannot be lowered into calls to
// themselves.

/// # Safety
/// As C's `memcpy`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: as C's memcpy; `rep movsb` copies forwards with the direction flag clear (the ABI's
    // state at every call).
    unsafe {
        asm!("rep movsb", inout("rcx") n => _, inout("rdi") dst => _, inout("rsi") src => _,
             options(nostack, preserves_flags));
    }
    dst
}

/// # Safety
/// As C's `memmove`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if n == 0 || (dst as usize).wrapping_sub(src as usize) >= n {
        // SAFETY: no overlap that a forward copy would clobber.
        return unsafe { memcpy(dst, src, n) };
    }
    // SAFETY: overlapping with dst after src: copy backwards, then restore the direction flag.
    unsafe {
        asm!("std", "rep movsb", "cld", inout("rcx") n => _, inout("rdi") dst.add(n - 1) => _,
             inout("rsi") src.add(n - 1) => _, options(nostack));
    }
    dst
}

/// # Safety
/// As C's `memset`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: as C's memset.
    unsafe {
        asm!("rep stosb", inout("rcx") n => _, inout("rdi") dst => _, in("al") c as u8,
             options(nostack, preserves_flags));
    }
    dst
}

/// # Safety
/// As C's `memcmp`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: both regions are `n` bytes long.
        let (x, y) = unsafe {
            (
                core::ptr::read_volatile(a.add(i)),
                core::ptr::read_volatile(b.add(i)),
            )
        };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// # Safety
/// As C's `bcmp`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: as memcmp.
    unsafe { memcmp(a, b, n) }
}

/// # Safety
/// As C's `strlen`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strlen(s: *const u8) -> usize {
    let mut len = 0;
    // SAFETY: `s` is NUL-terminated.
    while unsafe { core::ptr::read_volatile(s.add(len)) } != 0 {
        len += 1;
    }
    len
}

/// The precompiled `core` names an unwinding personality; this binary aborts on panic and never
/// unwinds, so nothing calls it.
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}
