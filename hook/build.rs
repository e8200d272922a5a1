//! Builds the fast hook so this crate's tests can run it (`GRASP_HOOK_FAST`, empty when the
//! target has none). graspd builds and embeds its own copy (daemon/build.rs).

include!("fast/compile.rs");

fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fast");
    let built = compile_fast_hook(&dir);
    let path = built.map(|p| p.display().to_string()).unwrap_or_default();
    println!("cargo:rustc-env=GRASP_HOOK_FAST={path}");
}
