//! Compiles tokex's XDP program (bpf/tokex_xdp.c) to BPF bytecode with
//! clang; src/net/xdp_prog.rs embeds the object file.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "bpf/tokex_xdp.c";
    println!("cargo:rerun-if-changed={src}");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR")).join("tokex_xdp.o");
    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("CARGO_CFG_TARGET_ARCH");
    // Debian keeps <asm/types.h> under the multiarch directory.
    let multiarch = format!("/usr/include/{arch}-linux-gnu");
    let status = Command::new(env::var("CLANG").unwrap_or_else(|_| "clang".into()))
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
        .arg(format!("-I{multiarch}"))
        .args(["-c", src, "-o"])
        .arg(&out)
        .status()
        .unwrap_or_else(|e| {
            panic!("running clang to build {src}: {e} (run tools/install-deps.sh first)")
        });
    assert!(status.success(), "clang failed to compile {src}");
}
