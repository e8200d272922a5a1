//! The ref updates git writes on a receive hook's stdin, validated once at the edge.
//!
//! git gives pre-receive and post-receive one `<old-oid> SP <new-oid> SP <ref-name> LF` line per
//! updated ref. This module turns those lines into typed [`RefUpdate`]s (or says which line is wrong
//! and why) so that nothing malformed ever reaches the daemon: a bad line is answered here, with
//! its line number, without a round trip.

use grasp_values::OidProblem;
use std::fmt;
use std::io::{self, BufRead};

/// Most ref updates one push may carry; beyond this the hook refuses to read on.
pub const MAX_UPDATES: usize = 100_000;

/// Longest line accepted. A line is two object ids and a ref name; no file system stores a ref
/// whose path is anywhere near this long, so a longer line is garbage, not a ref.
const MAX_LINE_BYTES: usize = 8 * 1024;

/// A git object id in hex: 40 characters (SHA-1) or 64 (SHA-256), lowercase, as git prints it.
/// All zeros means "no object": the ref is being created (old) or deleted (new).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Oid(String);

impl Oid {
    /// Parses an object id exactly as git prints it; `what` names the field in the error.
    fn parse(text: &str, what: &str) -> Result<Oid, String> {
        match grasp_values::object_id_problem(text.as_bytes()) {
            None => Ok(Oid(text.to_owned())),
            Some(OidProblem::Length(len)) => Err(format!(
                "{what} object id {text:?} has {len} characters, expected 40 or 64"
            )),
            Some(OidProblem::NotLowercaseHex) => {
                Err(format!("{what} object id {text:?} is not lowercase hexadecimal"))
            }
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A full ref name such as `refs/heads/main`, checked with git's check-ref-format rules (the
/// same `grasp_values` rules the daemon applies); the daemon applies the GRASP policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefName(String);

impl RefName {
    fn parse(text: &str) -> Result<RefName, String> {
        match grasp_values::ref_name_problem(text.as_bytes()) {
            None => Ok(RefName(text.to_owned())),
            Some(problem) => Err(format!("ref name {text:?} {}", problem.describe())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One line of hook input: `old` is replaced by `new` at `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    pub old: Oid,
    pub new: Oid,
    pub name: RefName,
}

impl RefUpdate {
    /// Parses one line (without its line feed).
    fn parse(line: &str) -> Result<RefUpdate, String> {
        let fields: Vec<&str> = line.split(' ').collect();
        let [old, new, name] = fields[..] else {
            return Err(format!(
                "expected \"<old-oid> <new-oid> <ref-name>\" separated by single spaces, got {line:?}"
            ));
        };
        let old = Oid::parse(old, "old")?;
        let new = Oid::parse(new, "new")?;
        if old.as_str().len() != new.as_str().len() {
            return Err("old and new object ids have different lengths (SHA-1 and SHA-256 mixed)".to_owned());
        }
        Ok(RefUpdate {
            old,
            new,
            name: RefName::parse(name)?,
        })
    }
}

impl From<RefUpdate> for grasp_proto::v1::RefUpdate {
    fn from(update: RefUpdate) -> Self {
        grasp_proto::v1::RefUpdate {
            old_oid: update.old.0,
            new_oid: update.new.0,
            ref_name: update.name.0,
        }
    }
}

/// Why the hook input was refused. `line` is 1-based, as an operator counts lines.
#[derive(Debug)]
pub enum InputError {
    /// A line that is not a valid ref update (or one line too many: see [`MAX_UPDATES`]).
    Malformed { line: usize, reason: String },
    /// stdin itself failed.
    Read(io::Error),
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::Malformed { line, reason } => write!(f, "line {line}: {reason}"),
            InputError::Read(err) => write!(f, "cannot read the ref updates on stdin: {err}"),
        }
    }
}

impl std::error::Error for InputError {}

/// Reads every ref update from `input` (git's hook stdin), stopping at the first bad line.
pub fn read_updates(input: impl BufRead) -> Result<Vec<RefUpdate>, InputError> {
    // `take` bounds how much one line can make us buffer; it is re-armed for every line.
    let mut input = input.take(0);
    let mut updates = Vec::new();
    let mut buf = Vec::new();
    for line_number in 1.. {
        buf.clear();
        input.set_limit(MAX_LINE_BYTES as u64 + 1);
        let read = input.read_until(b'\n', &mut buf).map_err(InputError::Read)?;
        if read == 0 {
            break;
        }
        let malformed = |reason: String| InputError::Malformed {
            line: line_number,
            reason,
        };
        if buf.last() == Some(&b'\n') {
            buf.pop();
        } else if buf.len() > MAX_LINE_BYTES {
            return Err(malformed(format!("line longer than {MAX_LINE_BYTES} bytes")));
        }
        if updates.len() == MAX_UPDATES {
            return Err(malformed(format!(
                "more than {MAX_UPDATES} ref updates in one push"
            )));
        }
        let line = std::str::from_utf8(&buf).map_err(|_| malformed("not valid UTF-8".to_owned()))?;
        updates.push(RefUpdate::parse(line).map_err(malformed)?);
    }
    Ok(updates)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";
    const ZERO: &str = "0000000000000000000000000000000000000000";
    const SHA256: &str = "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789";

    fn read(text: &str) -> Result<Vec<RefUpdate>, InputError> {
        read_updates(text.as_bytes())
    }

    fn reason_of(text: &str) -> (usize, String) {
        match read(text) {
            Err(InputError::Malformed { line, reason }) => (line, reason),
            other => panic!("expected a malformed-line error, got {other:?}"),
        }
    }

    #[test]
    fn git_hook_lines_become_ref_updates_in_order() {
        let input = format!("{ZERO} {A} refs/heads/main\n{A} {B} refs/tags/v1\n{B} {ZERO} refs/heads/old\n");
        let updates = read(&input).expect("valid input");
        assert_eq!(updates.len(), 3);
        assert_eq!(updates[0].old.as_str(), ZERO);
        assert_eq!(updates[0].new.as_str(), A);
        assert_eq!(updates[0].name.as_str(), "refs/heads/main");
        assert_eq!(updates[2].name.as_str(), "refs/heads/old");
    }

    #[test]
    fn sha256_object_ids_and_a_missing_final_newline_are_accepted() {
        let updates = read(&format!("{SHA256} {SHA256} refs/heads/main")).expect("valid input");
        assert_eq!(updates[0].new.as_str(), SHA256);
    }

    #[test]
    fn empty_input_is_no_updates() {
        assert!(read("").expect("valid input").is_empty());
    }

    #[test]
    fn the_error_names_the_offending_line() {
        let (line, reason) = reason_of(&format!("{A} {B} refs/heads/ok\n{A} {B}\n"));
        assert_eq!(line, 2);
        assert!(reason.contains("expected"), "{reason}");
    }

    #[test]
    fn object_ids_must_be_full_lowercase_hex() {
        let upper = "A".repeat(40);
        assert!(
            reason_of(&format!("{upper} {B} refs/heads/x\n"))
                .1
                .contains("lowercase hexadecimal")
        );
        assert!(
            reason_of(&format!("{A} abc refs/heads/x\n"))
                .1
                .contains("3 characters")
        );
        assert!(
            reason_of(&format!("{A} {SHA256} refs/heads/x\n"))
                .1
                .contains("different lengths")
        );
        let not_hex = "g".repeat(40);
        assert!(
            reason_of(&format!("{not_hex} {B} refs/heads/x\n"))
                .1
                .contains("old object id")
        );
    }

    #[test]
    fn ref_names_must_be_full_and_clean() {
        assert!(
            reason_of(&format!("{A} {B} heads/main\n"))
                .1
                .contains("does not start with refs/")
        );
        assert!(reason_of(&format!("{A} {B} refs/\n")).1.contains("names no ref"));
        assert!(reason_of(&format!("{A} {B} refs/heads/a..b\n")).1.contains(".."));
        assert!(
            reason_of(&format!("{A} {B} refs/heads/a\tb\n"))
                .1
                .contains("control")
        );
        assert!(
            reason_of(&format!("{A} {B} refs/heads/a\x1bb\n"))
                .1
                .contains("control")
        );
        assert!(
            reason_of(&format!("{A} {B} refs/heads/a\r\n"))
                .1
                .contains("control")
        );
    }

    #[test]
    fn extra_or_doubled_separators_are_malformed() {
        assert_eq!(reason_of(&format!("{A}  {B} refs/heads/x\n")).0, 1);
        assert_eq!(reason_of(&format!("{A} {B} refs/heads/x extra\n")).0, 1);
        assert_eq!(reason_of("\n").0, 1);
    }

    #[test]
    fn invalid_utf8_and_overlong_lines_are_malformed() {
        let mut bytes = format!("{A} {B} refs/heads/").into_bytes();
        bytes.extend_from_slice(b"\xff\n");
        match read_updates(&bytes[..]) {
            Err(InputError::Malformed { line: 1, reason }) => assert!(reason.contains("UTF-8")),
            other => panic!("unexpected {other:?}"),
        }
        let long = format!("{A} {B} refs/heads/{}\n", "x".repeat(MAX_LINE_BYTES));
        assert!(reason_of(&long).1.contains("longer than"));
    }

    #[test]
    fn at_most_max_updates_lines_are_read() {
        let line = format!("{A} {B} refs/heads/main\n");
        assert_eq!(
            read(&line.repeat(MAX_UPDATES)).expect("at the limit").len(),
            MAX_UPDATES
        );
        let (line_number, reason) = reason_of(&line.repeat(MAX_UPDATES + 1));
        assert_eq!(line_number, MAX_UPDATES + 1);
        assert!(reason.contains("more than 100000"), "{reason}");
    }

    #[test]
    fn updates_convert_to_the_grpc_message() {
        let update = read(&format!("{A} {B} refs/heads/main\n"))
            .expect("valid")
            .remove(0);
        let message = grasp_proto::v1::RefUpdate::from(update);
        assert_eq!((message.old_oid.as_str(), message.new_oid.as_str()), (A, B));
        assert_eq!(message.ref_name, "refs/heads/main");
    }
}
