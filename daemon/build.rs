//! Builds the fast grasp-hook (hook/fast) for graspd to embed and install into its hooks
//! directory (see src/git/hooks.rs). On targets without it, an empty file: hooks then use the
//! full grasp-hook only.

include!("../hook/fast/compile.rs");

fn main() {
    // sqlx::migrate! reads these at compile time.
    println!("cargo:rerun-if-changed=migrations");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../hook/fast");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    if compile_fast_hook(&dir).is_none() {
        std::fs::write(out.join("grasp-hook-fast"), b"").expect("write the empty fast hook");
    }
}
