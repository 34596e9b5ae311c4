//! `tokex replay` end to end on small hand-checked order-flow files.

use std::path::{Path, PathBuf};

use tokex::replay::{run, ReplayArgs};

fn replay(csv: &str, name: &str) -> (PathBuf, tokex::replay::ReplaySummary) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::env::temp_dir().join(format!("tokex-replay-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let orders = out.with_extension("csv");
    std::fs::write(&orders, csv).unwrap();
    let summary = run(&ReplayArgs {
        orders: orders.clone(),
        out: out.clone(),
        contracts: root.join("contracts"),
        config: None,
    });
    // The input is read by now; the caller removes `out` when it passes.
    let _ = std::fs::remove_file(&orders);
    (out, summary.unwrap())
}

fn read(dir: &Path, f: &str) -> String {
    std::fs::read_to_string(dir.join(f)).unwrap()
}

#[test]
fn replay_writes_trades_book_and_rejects_in_the_design_formats() {
    let csv = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/replay/basic.csv"),
    )
    .unwrap();
    let (out, summary) = replay(&csv, "basic");
    assert_eq!(
        read(&out, "trades.csv"),
        "match,symbol,price,qty,taker_account,taker_token,maker_account,maker_token\n\
         1,TK2612,6.505,5,beta,b1,alpha,a2\n\
         2,TK2612,6.510,7,beta,b1,alpha,a1\n"
    );
    assert_eq!(
        read(&out, "book.csv"),
        "symbol,side,price,qty,account,token\n\
         TK2612,B,6.495,6,gamma,g2\n\
         TK2612,S,6.510,3,alpha,a1\n\
         GH2612,S,2.150,3,delta,d1\n"
    );
    assert_eq!(
        read(&out, "rejects.csv"),
        "account,token,reason\n\
         gamma,g1,duplicate-token\n\
         alpha,a3,unknown-symbol\n\
         alpha,a4,price-off-tick\n\
         alpha,a5,price-outside-limits\n\
         beta,b1,unknown-order\n\
         beta,zz,unknown-order\n\
         delta,d3,market-not-open\n"
    );
    assert_eq!(
        (summary.rows, summary.malformed, summary.trades),
        (18, 1, 2)
    );
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn book_lists_bids_best_first_then_asks_best_first_in_time_priority() {
    let csv = "account,action,token,symbol,side,qty,price,tif\n\
               a,N,1,TK2612,B,1,6.400,DAY\n\
               b,N,2,TK2612,B,2,6.410,DAY\n\
               c,N,3,TK2612,B,3,6.400,DAY\n\
               a,N,4,TK2612,S,4,6.600,DAY\n\
               b,N,5,TK2612,S,5,6.590,DAY\n";
    let (out, _) = replay(csv, "order");
    assert_eq!(
        read(&out, "book.csv"),
        "symbol,side,price,qty,account,token\n\
         TK2612,B,6.410,2,b,2\n\
         TK2612,B,6.400,1,a,1\n\
         TK2612,B,6.400,3,c,3\n\
         TK2612,S,6.590,5,b,5\n\
         TK2612,S,6.600,4,a,4\n"
    );
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn the_old_token_of_a_replaced_order_can_no_longer_cancel_it() {
    let csv = "account,action,token,symbol,side,qty,price,tif\n\
               a,N,t1,TK2612,B,5,6.400,DAY\n\
               a,R,t1>t2,,,4,6.400,\n\
               a,C,t1,,,0,,\n";
    let (out, _) = replay(csv, "oldtoken");
    assert_eq!(
        read(&out, "rejects.csv"),
        "account,token,reason\na,t1,unknown-order\n"
    );
    assert_eq!(
        read(&out, "book.csv"),
        "symbol,side,price,qty,account,token\nTK2612,B,6.400,4,a,t2\n"
    );
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn tokens_are_per_account() {
    let csv = "account,action,token,symbol,side,qty,price,tif\n\
               a,N,x,TK2612,B,1,6.400,DAY\n\
               b,N,x,TK2612,B,1,6.400,DAY\n\
               b,C,x,,,0,,\n";
    let (out, summary) = replay(csv, "peraccount");
    assert_eq!(summary.rejects, 0);
    assert_eq!(
        read(&out, "book.csv"),
        "symbol,side,price,qty,account,token\nTK2612,B,6.400,1,a,x\n"
    );
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn phase_rows_halt_and_reopen_a_contract() {
    let csv = "account,action,token,symbol,side,qty,price,tif\n\
               ,P,halt,,,,,\n\
               a,N,1,TK2612,B,1,6.400,DAY\n\
               ,P,open,TK2612,,,,\n\
               a,N,2,TK2612,B,1,6.400,DAY\n\
               a,N,3,GH2612,B,1,2.100,DAY\n";
    let (out, _) = replay(csv, "phase");
    assert_eq!(
        read(&out, "rejects.csv"),
        "account,token,reason\na,1,market-not-open\na,3,market-not-open\n"
    );
    std::fs::remove_dir_all(&out).unwrap();
}
