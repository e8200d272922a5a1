//! Rules on git values that graspd's daemon, `grasp-hook` and the fast hook all apply, written
//! once: what an object id looks like as git prints it, and which ref names git accepts.
//!
//! No standard library and no allocation, because the fast hook (built without a C library, see
//! `hook/fast`) includes `rules.rs` as a module of its own; the daemon and the hook use this crate.

#![no_std]
#![forbid(unsafe_code)]

mod rules;

pub use rules::{OidProblem, RefNameProblem, object_id_problem, ref_name_problem};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids_are_full_lowercase_hex() {
        assert_eq!(object_id_problem(&[b'a'; 40]), None);
        assert_eq!(object_id_problem(&[b'0'; 64]), None);
        assert_eq!(object_id_problem(&[b'a'; 39]), Some(OidProblem::Length(39)));
        assert_eq!(object_id_problem(&[b'A'; 40]), Some(OidProblem::NotLowercaseHex));
        assert_eq!(object_id_problem(b"abc123"), Some(OidProblem::Length(6)));
    }

    #[test]
    fn ref_names_follow_check_ref_format_and_say_why_not() {
        for ok in [
            &b"refs/heads/main"[..],
            b"refs/tags/v1.0",
            b"refs/heads/feat/x-y",
            "refs/heads/é".as_bytes(),
        ] {
            assert_eq!(ref_name_problem(ok), None);
        }
        let cases: [(&[u8], RefNameProblem); 11] = [
            (b"HEAD", RefNameProblem::NotUnderRefs),
            (b"refs/", RefNameProblem::NoName),
            (b"refs/heads/", RefNameProblem::BadEnding),
            (b"refs/heads/a..b", RefNameProblem::DotDot),
            (b"refs/heads/a b", RefNameProblem::ControlOrSpace),
            (b"refs/heads/a\nb", RefNameProblem::ControlOrSpace),
            (b"refs/heads/.hidden", RefNameProblem::BadComponent),
            (b"refs/heads/x.lock", RefNameProblem::BadComponent),
            (b"refs/heads/a^{}", RefNameProblem::ForbiddenCharacter),
            (b"refs/heads/a@{1}", RefNameProblem::Reflog),
            (b"refs//heads", RefNameProblem::BadComponent),
        ];
        for (name, problem) in cases {
            assert_eq!(ref_name_problem(name), Some(problem), "{name:?}");
        }
        assert_eq!(
            ref_name_problem(&[b'a'; 2000]),
            Some(RefNameProblem::NotUnderRefs)
        );
    }
}
