//! `tokex exchange` refuses, before it allocates anything or touches the
//! network, a config whose capacity-sized stores do not fit in the
//! machine's available memory, naming the keys that size them.

use std::fmt::Write;
use std::path::Path;
use std::process::Command;

#[test]
fn stores_larger_than_the_machine_are_refused_at_start_up_by_key() {
    // The largest arena and re-request window the config accepts, for 256
    // sessions: 17 GiB + 256 × 1.3 GiB, far beyond any test machine.
    let mut text =
        String::from("[engine]\nmax_orders = 268435456\n[gateway]\nresend_window = 16777216\n");
    for i in 0..256 {
        write!(
            text,
            "[[session]]\nusername = \"u{i:03}\"\npassword = \"p{i:03}\"\n"
        )
        .unwrap();
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("exchange_config");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("huge.toml");
    std::fs::write(&path, text).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_tokex"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_BACKTRACE", "0")
        .args(["exchange", "--max-seconds", "1", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("MiB available (MemAvailable)"), "{stderr}");
    assert!(
        stderr.contains("order arena (engine.max_orders) 17408 MiB"),
        "{stderr}"
    );
    assert!(
        stderr.contains("re-request windows (gateway.resend_window, every session) 331776 MiB"),
        "{stderr}"
    );
    // Refused before the transport was opened.
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
