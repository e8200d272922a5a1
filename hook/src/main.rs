//! `grasp-hook`: git's pre-receive and post-receive hook for graspd repositories.
//!
//! This build only validates its input; reporting to the daemon over gRPC comes with the push
//! path. Until then it refuses every push (fail closed) with a clear message.

use std::io::{BufRead, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let stdin = std::io::stdin();
    let mut stderr = std::io::stderr();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.split_whitespace().count() != 3 {
            let _ = writeln!(stderr, "grasp-hook: malformed ref update line: {line:?}");
            return ExitCode::FAILURE;
        }
    }
    let _ = writeln!(stderr, "grasp-hook: this graspd build does not accept pushes yet");
    ExitCode::FAILURE
}
