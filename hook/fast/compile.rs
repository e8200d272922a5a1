// Builds the fast hook (hook/fast/main.rs) for a build script; `include!`d by hook/build.rs and
// daemon/build.rs. It is compiled by calling rustc directly because it needs what a workspace
// profile cannot give a single binary: `panic = "abort"`, no C start files, no C library, a
// static non-PIE executable.
//
// Returns the built executable, or `None` (with a cargo warning) on targets it does not support
// (anything but x86_64 Linux, or a cross build); there the full grasp-hook serves alone.

fn compile_fast_hook(fast_dir: &std::path::Path) -> Option<std::path::PathBuf> {
    for file in ["main.rs", "sys.rs", "wire.rs", "huffman.rs", "compile.rs", "../../values/src/rules.rs"] {
        println!("cargo:rerun-if-changed={}", fast_dir.join(file).display());
    }
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let (target, host) = (var("TARGET"), var("HOST"));
    if var("CARGO_CFG_TARGET_ARCH") != "x86_64" || var("CARGO_CFG_TARGET_OS") != "linux" || target != host {
        println!("cargo:warning=the fast grasp-hook is built only for x86_64 Linux hosts; hooks use the full grasp-hook");
        return None;
    }
    let out = std::path::PathBuf::from(var("OUT_DIR")).join("grasp-hook-fast");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let status = std::process::Command::new(rustc)
        .arg(fast_dir.join("main.rs"))
        .args(["--edition", "2024", "--crate-type", "bin", "--crate-name", "grasp_hook_fast"])
        .args(["-C", "opt-level=3", "-C", "panic=abort", "-C", "codegen-units=1"])
        .args(["-C", "relocation-model=static", "-C", "strip=symbols", "-C", "debuginfo=0"])
        .args(["-C", "link-arg=-nostartfiles", "-C", "link-arg=-nostdlib", "-C", "link-arg=-static"])
        .args(["-C", "link-arg=-no-pie", "-C", "link-arg=-Wl,--gc-sections"])
        .arg("-o")
        .arg(&out)
        .status();
    match status {
        Ok(status) if status.success() => Some(out),
        Ok(status) => panic!("building the fast grasp-hook (hook/fast/main.rs) failed: rustc {status}"),
        Err(error) => panic!("cannot run rustc to build the fast grasp-hook: {error}"),
    }
}
