//! `tokex replay` over a day with phase rows: pre-open, the opening call,
//! the uncross in trades.csv and itch.bin, continuous trading after it, and
//! the settlement files, all worked by hand.

use std::path::{Path, PathBuf};

use tokex::feed::book::FeedBooks;
use tokex::replay::{run, ReplayArgs, ReplaySummary};
use tokex::types::Side;
use tokex::wire::itch::{self, Message};

/// Pre-open, then the call, then the open. At the open the book is
///   bids 6.520×10 (a1), 6.515×5 (g1); asks 6.480×4 (b1), 6.510×8 (b2)
///   p              B   S   V  imbalance
///   6.480-6.509   15   4   4  11 buy
///   6.510-6.515   15  12  12   3 buy
///   6.516-6.520   10  12  10   2 sell
/// so it uncrosses 12 lots at 6.510 (closest to the reference 6.500):
/// a1-b1 4, a1-b2 6, g1-b2 2; the later order of a pair is the taker.
/// Then d1 sells 2 into g1's 3 left at 6.515.
const DAY: &str = "account,action,token,symbol,side,qty,price,tif
,P,preopen,TK2612,,,,
alpha,N,a1,TK2612,B,10,6.520,DAY
beta,N,b1,TK2612,S,4,6.480,DAY
beta,N,b2,TK2612,S,8,6.510,DAY
alpha,N,a2,TK2612,B,3,6.500,IOC
,P,auction,TK2612,,,,
gamma,N,g1,TK2612,B,5,6.515,DAY
,P,open,TK2612,,,,
delta,N,d1,TK2612,S,2,6.500,DAY
";

fn replay(csv: &str, name: &str, config: Option<PathBuf>) -> (PathBuf, ReplaySummary) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::env::temp_dir().join(format!("tokex-life-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let orders = out.with_extension("csv");
    std::fs::write(&orders, csv).unwrap();
    let summary = run(&ReplayArgs {
        orders: orders.clone(),
        out: out.clone(),
        contracts: root.join("contracts"),
        config,
    });
    // The input is read by now; the caller removes `out` when it passes.
    let _ = std::fs::remove_file(&orders);
    (out, summary.unwrap())
}

fn read(dir: &Path, f: &str) -> String {
    std::fs::read_to_string(dir.join(f)).unwrap()
}

#[test]
fn moving_from_the_call_to_open_uncrosses_in_trades_csv_and_itch_bin() {
    let (out, summary) = replay(DAY, "day", None);
    assert_eq!(
        read(&out, "trades.csv"),
        "match,symbol,price,qty,taker_account,taker_token,maker_account,maker_token\n\
         1,TK2612,6.510,4,beta,b1,alpha,a1\n\
         2,TK2612,6.510,6,beta,b2,alpha,a1\n\
         3,TK2612,6.510,2,gamma,g1,beta,b2\n\
         5,TK2612,6.515,2,delta,d1,gamma,g1\n"
    );
    assert_eq!(
        read(&out, "book.csv"),
        "symbol,side,price,qty,account,token\nTK2612,B,6.515,1,gamma,g1\n"
    );
    assert_eq!(
        read(&out, "rejects.csv"),
        "account,token,reason\nalpha,a2,tif-not-allowed-now\n"
    );
    assert_eq!((summary.trades, summary.crosses), (4, 1));

    // itch.bin: the call's NOII, both sides of each cross fill as
    // non-printable executions at 6.510, one Cross Trade of 12 lots
    // (match 4), and Trading Actions for every phase.
    let bin = std::fs::read(out.join("itch.bin")).unwrap();
    let msgs: Vec<Message> = itch::stream(&bin).map(Result::unwrap).collect();
    let noii: Vec<itch::Imbalance> = msgs
        .iter()
        .filter_map(|m| match m {
            Message::Noii(n) => Some(n.imbalance()),
            _ => None,
        })
        .collect();
    // At the start of the call (bids 6.520×10; asks 6.480×4, 6.510×8):
    // V = 10 at 6.510-6.520 with 2 sell left over, so 6.510, the nearest
    // to the reference; after g1: 12 paired, 3 buy left over.
    assert_eq!(noii.len(), 2);
    assert_eq!(
        (noii[0].paired, noii[0].imbalance, noii[0].direction),
        (10, 2, b'S')
    );
    assert_eq!(
        (
            noii[1].paired,
            noii[1].imbalance,
            noii[1].direction,
            noii[1].cross_type
        ),
        (12, 3, b'B', b'O')
    );
    assert_eq!(noii[1].near.to_string(), "6.51");
    // ITCH 5.0's Current Reference Price is the price the paired and
    // imbalance shares are calculated at: the indicative price, not the
    // tie-break reference (6.500).
    assert_eq!(noii[1].reference.to_string(), "6.51");
    assert_eq!(noii[1].far.to_string(), "6.51");
    let cross_fills: Vec<(u32, u64, bool)> = msgs
        .iter()
        .filter_map(|m| match m {
            Message::OrderExecutedWithPrice(e) => {
                Some((e.price().raw(), e.match_number(), e.printable()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        cross_fills,
        [1, 1, 2, 2, 3, 3].map(|n| (65_100, n, false)).to_vec()
    );
    let crosses: Vec<(u64, String, u64, u8)> = msgs
        .iter()
        .filter_map(|m| match m {
            Message::CrossTrade(c) => Some((
                c.shares(),
                c.price().to_string(),
                c.match_number(),
                c.cross_type,
            )),
            _ => None,
        })
        .collect();
    assert_eq!(crosses, vec![(12, "6.51".to_string(), 4, b'O')]);
    let states: Vec<u8> = msgs
        .iter()
        .filter_map(|m| match m {
            Message::TradingAction(t) if t.stock_locate.get() == 1 => Some(t.trading_state),
            _ => None,
        })
        .collect();
    // Start of day (trading), pre-open, call, open.
    assert_eq!(states, b"TQQT".to_vec());

    // A feed handler rebuilds the final book from itch.bin.
    let mut feed = FeedBooks::new();
    for m in &msgs {
        feed.apply(m, &mut |_, _, _, _| {}).unwrap();
    }
    let rebuilt: Vec<(Side, String, u32)> = feed
        .orders(1)
        .iter()
        .map(|o| (o.side, o.price.to_string(), o.qty.lots()))
        .collect();
    assert_eq!(rebuilt, vec![(Side::Buy, "6.515".to_string(), 1)]);
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn replay_writes_settlement_prices_and_each_accounts_variation_margin() {
    let (out, _) = replay(DAY, "settle", None);
    // TK2612: (12 × 6.510 + 2 × 6.515) / 14 = 6.51071 -> 6.511; every other
    // contract did not trade: its reference.
    assert_eq!(
        read(&out, "settlement.csv"),
        "symbol,settlement_price,basis,volume,day_volume\n\
         TK2612,6.511,day-vwap,14,14\n\
         TK2701,6.320,reference,0,0\n\
         TK2702,6.180,reference,0,0\n\
         TK2703,6.050,reference,0,0\n\
         GH2612,2.150,reference,0,0\n\
         GH2703,2.080,reference,0,0\n\
         GB2612,3.850,reference,0,0\n"
    );
    // Lot 10,000 M tokens; variation margin = fills' cash + position × 6.511:
    //   alpha +10 @ 6.510:                      +0.010 -> 100
    //   beta  -12 @ 6.510:                      -0.012 -> -120
    //   gamma +2 @ 6.510, +2 @ 6.515: 26.044 - 26.050 -> -60
    //   delta -2 @ 6.515:            13.030 - 13.022 -> 80
    assert_eq!(
        read(&out, "variation_margin.csv"),
        "account,symbol,position,avg_price,bought,sold,settlement_price,\
         realized_pnl,unrealized_pnl,variation_margin\n\
         alpha,TK2612,10,6.5100,10,0,6.511,0.0000,100.0000,100.0000\n\
         beta,TK2612,-12,6.5100,0,12,6.511,0.0000,-120.0000,-120.0000\n\
         gamma,TK2612,4,6.5125,4,0,6.511,0.0000,-60.0000,-60.0000\n\
         delta,TK2612,-2,6.5150,0,2,6.511,0.0000,80.0000,80.0000\n"
    );
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn replay_applies_credit_limits_from_the_config_by_account_name() {
    // alpha may use 50,000 of margin: 7 lots at 6.500 × 10,000 × 10% =
    // 45,500 fit, 8 (52,000) do not; beta has no session: no limit.
    let dir = std::env::temp_dir().join(format!("tokex-life-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("tokex.toml");
    std::fs::write(
        &cfg,
        "[risk]\nmax_live_orders = 3\n\
         [[session]]\nusername = \"alpha\"\npassword = \"alpha\"\ncredit = 50000\n",
    )
    .unwrap();
    let csv = "account,action,token,symbol,side,qty,price,tif
alpha,N,a1,TK2612,B,7,6.500,DAY
alpha,N,a2,TK2612,B,1,6.500,DAY
beta,N,b1,TK2612,B,100,6.400,DAY
beta,N,b2,TK2612,B,1,6.400,DAY
beta,N,b3,TK2612,B,1,6.400,DAY
beta,N,b4,TK2612,B,1,6.400,DAY
";
    let (out, _) = replay(csv, "credit", Some(cfg));
    assert_eq!(
        read(&out, "rejects.csv"),
        "account,token,reason\nalpha,a2,risk-limit\nbeta,b4,too-many-orders\n"
    );
    std::fs::remove_dir_all(&out).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
