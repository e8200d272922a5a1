// Included as a module by the fast hook (hook/fast/main.rs) as well as by this crate: plain
// functions over bytes, no attributes, no allocation, no dependencies.

/// Why bytes are not a git object id as git prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OidProblem {
    /// Not 40 (SHA-1) or 64 (SHA-256) characters long; the length it has.
    Length(usize),
    /// The right length, but not lowercase hexadecimal.
    NotLowercaseHex,
}

/// `None` when `text` is an object id: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits.
pub fn object_id_problem(text: &[u8]) -> Option<OidProblem> {
    if text.len() != 40 && text.len() != 64 {
        return Some(OidProblem::Length(text.len()));
    }
    if !text.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Some(OidProblem::NotLowercaseHex);
    }
    None
}

/// Why bytes are not a full ref name git accepts (git-check-ref-format(1), under `refs/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefNameProblem {
    NotUnderRefs,
    NoName,
    TooLong,
    ControlOrSpace,
    DotDot,
    ForbiddenCharacter,
    Reflog,
    BadEnding,
    BadComponent,
}

impl RefNameProblem {
    /// What is wrong, to follow the name in a message.
    pub fn describe(self) -> &'static str {
        match self {
            Self::NotUnderRefs => "does not start with refs/",
            Self::NoName => "names no ref",
            Self::TooLong => "is longer than 1024 bytes",
            Self::ControlOrSpace => "contains whitespace or a control character",
            Self::DotDot => "contains \"..\"",
            Self::ForbiddenCharacter => "contains one of ~ ^ : ? * [ \\",
            Self::Reflog => "contains \"@{\" or is \"@\"",
            Self::BadEnding => "ends with '/' or '.'",
            Self::BadComponent => "has an empty component, one starting with '.', or one ending in .lock",
        }
    }
}

/// Longest ref name accepted, in bytes.
const MAX_REF_NAME: usize = 1024;

/// `None` when `name` is a full ref name (`refs/...`) that git's check-ref-format accepts.
pub fn ref_name_problem(name: &[u8]) -> Option<RefNameProblem> {
    if !name.starts_with(b"refs/") {
        return Some(RefNameProblem::NotUnderRefs);
    }
    if name == b"refs/" {
        return Some(RefNameProblem::NoName);
    }
    if name.len() > MAX_REF_NAME {
        return Some(RefNameProblem::TooLong);
    }
    if name.iter().any(|b| *b < 0x20 || *b == 0x7f || *b == b' ') {
        return Some(RefNameProblem::ControlOrSpace);
    }
    if name.windows(2).any(|w| w == b"..") {
        return Some(RefNameProblem::DotDot);
    }
    if name
        .iter()
        .any(|b| matches!(b, b'~' | b'^' | b':' | b'?' | b'*' | b'[' | b'\\'))
    {
        return Some(RefNameProblem::ForbiddenCharacter);
    }
    if name.windows(2).any(|w| w == b"@{") || name == b"@" {
        return Some(RefNameProblem::Reflog);
    }
    if name.ends_with(b"/") || name.ends_with(b".") {
        return Some(RefNameProblem::BadEnding);
    }
    let bad_component = |part: &[u8]| part.is_empty() || part.starts_with(b".") || part.ends_with(b".lock");
    if name.split(|b| *b == b'/').any(bad_component) {
        return Some(RefNameProblem::BadComponent);
    }
    None
}
