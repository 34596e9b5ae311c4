//! `tokex replay`: runs the engine over an order-flow CSV file and writes
//! trades, the final book, rejects and the ITCH stream (DESIGN.md formats).
//!
//! Owns the order-flow file format (parsing with line-numbered errors; a bad
//! row is reported and skipped), the per-account token namespace, and the
//! output files. The engine does the trading; this module only translates.
//!
//! Beyond DESIGN.md's files it writes the day's settlement:
//! `settlement.csv` (each contract's settlement price and how it was found)
//! and `variation_margin.csv` (each account's position, average price,
//! realized and unrealized P&L and variation margin at the settlement
//! price). Every account is registered with the engine when first seen;
//! with `--config`, an account named like a `[[session]]` gets that
//! session's credit limit, and `[risk]` limits apply to all. Phase rows
//! drive the lifecycle: `P,auction` then `P,open` uncrosses the book.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::accounts::{AccountLimits, Accounts};
use crate::config::Config;
use crate::contract::ContractSet;
use crate::engine::{Engine, EngineConfig, Event, EventSink, NewOrder, Phase, RejectReason};
use crate::feed::itch_encoder::{ItchEncoder, ItchFileSink};
use crate::settlement::Settlement;
use crate::types::{AccountId, InstrumentId, Nanos, OrderId, Price, Qty, Side, Symbol, Tif};

#[derive(clap::Args, Debug, Clone)]
pub struct ReplayArgs {
    /// Order-flow CSV: account,action,token,symbol,side,qty,price,tif
    #[arg(long)]
    pub orders: PathBuf,
    /// Output directory (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Contract files.
    #[arg(long, default_value = "contracts")]
    pub contracts: PathBuf,
    /// Exchange config whose `[[session]]` credit limits (by account name)
    /// and `[risk]` limits apply; without it no account has limits.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    pub rows: u64,
    pub malformed: u64,
    pub trades: u64,
    pub rejects: u64,
    pub resting: u64,
    pub itch_messages: u64,
    /// Call-auction prints (uncrosses that traded).
    pub crosses: u64,
}

impl fmt::Display for ReplaySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} rows ({} malformed), {} trades ({} auction crosses), {} rejects, {} orders resting, {} ITCH messages",
            self.rows,
            self.malformed,
            self.trades,
            self.crosses,
            self.rejects,
            self.resting,
            self.itch_messages
        )
    }
}

/// One parsed row of the order-flow file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Row {
    Enter {
        account: String,
        token: String,
        symbol: String,
        side: Side,
        qty: Qty,
        price: Price,
        tif: Tif,
    },
    Cancel {
        account: String,
        token: String,
        qty: Qty,
    },
    Replace {
        account: String,
        old: String,
        new: String,
        qty: Qty,
        price: Price,
    },
    Phase {
        phase: Phase,
        symbol: Option<String>,
    },
}

/// Why a row could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError(pub String);

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn field<'a>(cols: &[&'a str], i: usize, name: &str) -> Result<&'a str, RowError> {
    let v = cols.get(i).map(|s| s.trim()).unwrap_or("");
    if v.is_empty() {
        Err(RowError(format!("missing {name}")))
    } else {
        Ok(v)
    }
}

fn parse_with<T, E: fmt::Display>(
    cols: &[&str],
    i: usize,
    name: &str,
    f: impl Fn(&str) -> Result<T, E>,
) -> Result<T, RowError> {
    let v = field(cols, i, name)?;
    f(v).map_err(|e| RowError(format!("bad {name} {v:?}: {e}")))
}

/// Parses one data row (`account,action,token,symbol,side,qty,price,tif`).
pub fn parse_row(line: &str) -> Result<Row, RowError> {
    let cols: Vec<&str> = line.split(',').collect();
    if cols.len() != 8 {
        return Err(RowError(format!(
            "expected 8 columns, found {}",
            cols.len()
        )));
    }
    let qty = |cols: &[&str]| parse_with(cols, 5, "qty", str::parse::<Qty>);
    let price = |cols: &[&str]| parse_with(cols, 6, "price", str::parse::<Price>);
    match field(&cols, 1, "action")? {
        "N" => Ok(Row::Enter {
            account: field(&cols, 0, "account")?.to_string(),
            token: field(&cols, 2, "token")?.to_string(),
            symbol: field(&cols, 3, "symbol")?.to_string(),
            side: parse_with(&cols, 4, "side", |s| match s {
                "B" => Ok(Side::Buy),
                "S" => Ok(Side::Sell),
                _ => Err("expected B or S"),
            })?,
            qty: qty(&cols)?,
            price: price(&cols)?,
            tif: parse_with(&cols, 7, "tif", |s| {
                s.parse::<Tif>().map_err(|_| "expected DAY, IOC or FOK")
            })?,
        }),
        "C" => Ok(Row::Cancel {
            account: field(&cols, 0, "account")?.to_string(),
            token: field(&cols, 2, "token")?.to_string(),
            qty: qty(&cols)?,
        }),
        "R" => {
            let t = field(&cols, 2, "token")?;
            let (old, new) = t
                .split_once('>')
                .filter(|(o, n)| !o.is_empty() && !n.is_empty())
                .ok_or_else(|| RowError(format!("replace token {t:?} is not old>new")))?;
            Ok(Row::Replace {
                account: field(&cols, 0, "account")?.to_string(),
                old: old.to_string(),
                new: new.to_string(),
                qty: qty(&cols)?,
                price: price(&cols)?,
            })
        }
        "P" => {
            let name = field(&cols, 2, "phase")?;
            let phase =
                Phase::parse(name).ok_or_else(|| RowError(format!("unknown phase {name:?}")))?;
            let symbol = cols[3].trim();
            Ok(Row::Phase {
                phase,
                symbol: (!symbol.is_empty()).then(|| symbol.to_string()),
            })
        }
        other => Err(RowError(format!("unknown action {other:?}"))),
    }
}

/// Per-account order tokens, as a session's tokens are.
#[derive(Default)]
struct Tokens {
    accounts: HashMap<String, AccountId>,
    names: Vec<String>,
    /// (account, token) -> index into `orders`.
    used: HashMap<(AccountId, String), usize>,
    /// Per token index: (account, token, current engine order id).
    orders: Vec<(AccountId, String, Option<OrderId>)>,
}

/// Limits of replay accounts, by name: a session of the config gives its
/// own; other accounts get the `[risk]` limits alone.
#[derive(Default)]
struct Limits {
    by_name: HashMap<String, AccountLimits>,
    default: AccountLimits,
}

impl Limits {
    fn from_config(c: &Config) -> Limits {
        Limits {
            by_name: c
                .sessions
                .iter()
                .map(|s| (s.username.clone(), AccountLimits::of_session(s, &c.risk)))
                .collect(),
            default: AccountLimits {
                credit: None,
                max_live_orders: c.risk.max_live_orders,
            },
        }
    }

    fn of(&self, name: &str) -> AccountLimits {
        self.by_name.get(name).copied().unwrap_or(self.default)
    }
}

impl Tokens {
    /// The id of an account name; a new name is registered with `accounts`.
    fn account(&mut self, name: &str, accounts: &mut Accounts, limits: &Limits) -> AccountId {
        if let Some(a) = self.accounts.get(name) {
            return *a;
        }
        let id = AccountId(self.names.len() as u32);
        self.accounts.insert(name.to_string(), id);
        self.names.push(name.to_string());
        accounts.register(id, limits.of(name));
        id
    }

    /// Registers a fresh token; `None` if the account already used it.
    fn claim(&mut self, account: AccountId, token: &str) -> Option<u64> {
        let key = (account, token.to_string());
        if self.used.contains_key(&key) {
            return None;
        }
        let tag = self.orders.len();
        self.used.insert(key, tag);
        self.orders.push((account, token.to_string(), None));
        Some(tag as u64)
    }

    fn live_order(&self, account: AccountId, token: &str) -> Option<OrderId> {
        let idx = *self.used.get(&(account, token.to_string()))?;
        self.orders[idx].2
    }
}

/// Collects what a replay writes while the engine runs.
struct Recorder<'a> {
    contracts: &'a ContractSet,
    tokens: &'a mut Tokens,
    settlement: &'a mut Settlement,
    now: Nanos,
    trades: BufWriter<File>,
    rejects: BufWriter<File>,
    summary: &'a mut ReplaySummary,
    error: Option<std::io::Error>,
}

impl Recorder<'_> {
    fn price(&self, instrument: InstrumentId, p: Price) -> String {
        let d = self
            .contracts
            .get(instrument)
            .map_or(4, |c| c.price_decimals());
        p.to_string_decimals(d)
    }

    fn write(&mut self, which: u8, line: std::fmt::Arguments<'_>) {
        let w = if which == 0 {
            &mut self.trades
        } else {
            &mut self.rejects
        };
        if let Err(e) = w.write_fmt(line) {
            self.error.get_or_insert(e);
        }
    }

    fn reject(&mut self, account: AccountId, token: &str, reason: RejectReason) {
        self.summary.rejects += 1;
        let name = self.tokens.names[account.0 as usize].clone();
        self.write(1, format_args!("{name},{token},{reason}\n"));
    }
}

impl EventSink for Recorder<'_> {
    fn event(&mut self, e: &Event) {
        match *e {
            Event::Accepted { tag, order, .. } => {
                self.tokens.orders[tag as usize].2 = Some(order);
            }
            Event::Replaced { tag, order, .. } => {
                self.tokens.orders[tag as usize].2 = Some(order);
            }
            Event::Rejected {
                account,
                tag,
                reason,
            } => {
                let token = self.tokens.orders[tag as usize].1.clone();
                self.reject(account, &token, reason);
            }
            Event::Cross { .. } => self.summary.crosses += 1,
            Event::Executed {
                match_number,
                instrument,
                price,
                qty,
                taker,
                maker,
                ..
            } => {
                self.settlement.record(self.now, e);
                self.summary.trades += 1;
                let symbol = self.contracts.get(instrument).map(|c| c.symbol);
                let symbol = symbol.as_ref().map_or("", Symbol::as_str).to_string();
                let price = self.price(instrument, price);
                let t = &self.tokens;
                let (tn, tt) = (
                    &t.names[taker.account.0 as usize],
                    &t.orders[taker.tag as usize].1,
                );
                let (mn, mt) = (
                    &t.names[maker.account.0 as usize],
                    &t.orders[maker.tag as usize].1,
                );
                let line = format!("{match_number},{symbol},{price},{qty},{tn},{tt},{mn},{mt}\n");
                self.write(0, format_args!("{line}"));
            }
            _ => {}
        }
    }
}

/// Runs a replay and writes its files; returns the summary.
pub fn run(args: &ReplayArgs) -> anyhow::Result<ReplaySummary> {
    let contracts = ContractSet::load_dir(&args.contracts)?;
    let input =
        File::open(&args.orders).with_context(|| format!("opening {}", args.orders.display()))?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let create = |name: &str| -> anyhow::Result<BufWriter<File>> {
        let p = args.out.join(name);
        Ok(BufWriter::new(
            File::create(&p).with_context(|| format!("creating {}", p.display()))?,
        ))
    };
    let mut trades = create("trades.csv")?;
    writeln!(
        trades,
        "match,symbol,price,qty,taker_account,taker_token,maker_account,maker_token"
    )?;
    let mut rejects = create("rejects.csv")?;
    writeln!(rejects, "account,token,reason")?;

    let limits = match &args.config {
        Some(p) => Limits::from_config(&Config::load(p)?),
        None => Limits::default(),
    };
    let mut engine = Engine::new(&contracts, EngineConfig::default());
    let mut tokens = Tokens::default();
    let mut summary = ReplaySummary::default();
    let mut settlement = Settlement::new(&contracts);
    let mut now = Nanos(9 * 3_600_000_000_000);
    let mut itch = ItchFileSink::new(ItchEncoder::new(&contracts), create("itch.bin")?);
    itch.start_of_day();
    let mut rec = Recorder {
        contracts: &contracts,
        tokens: &mut tokens,
        settlement: &mut settlement,
        now,
        trades,
        rejects,
        summary: &mut summary,
        error: None,
    };

    let reader = BufReader::new(input);
    for (n, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", args.orders.display()))?;
        let lineno = n + 1;
        if n == 0 || line.trim().is_empty() {
            continue; // header
        }
        rec.summary.rows += 1;
        // Time is the row number: 09:00:00 plus one microsecond per line.
        now = Nanos(9 * 3_600_000_000_000 + lineno as u64 * 1_000);
        rec.now = now;
        let row = match parse_row(&line) {
            Ok(r) => r,
            Err(e) => {
                rec.summary.malformed += 1;
                eprintln!("{}:{lineno}: {e}; row skipped", args.orders.display());
                continue;
            }
        };
        itch.set_time(now);
        let mut sink = crate::engine::Tee(&mut rec, &mut itch);
        apply(
            &contracts,
            &mut engine,
            &limits,
            now,
            row,
            &mut sink,
            &args.orders,
            lineno,
        );
    }
    let Recorder {
        mut trades,
        mut rejects,
        error,
        ..
    } = rec;
    if let Some(e) = error {
        return Err(e).context("writing replay output");
    }
    trades.flush()?;
    rejects.flush()?;
    let (mut itch_out, messages) = itch.finish().context("writing itch.bin")?;
    itch_out.flush()?;
    summary.itch_messages = messages;

    let mut book = create("book.csv")?;
    writeln!(book, "symbol,side,price,qty,account,token")?;
    for c in contracts.iter() {
        for side in [Side::Buy, Side::Sell] {
            for o in engine.resting(c.id, side) {
                summary.resting += 1;
                let (acct, token) = (
                    &tokens.names[o.account.0 as usize],
                    &tokens.orders[o.tag as usize].1,
                );
                writeln!(
                    book,
                    "{},{},{},{},{acct},{token}",
                    c.symbol,
                    if side == Side::Buy { 'B' } else { 'S' },
                    o.price.to_string_decimals(c.price_decimals()),
                    o.qty
                )?;
            }
        }
    }
    book.flush()?;

    // The day closes at the last row.
    let mut prices = create("settlement.csv")?;
    settlement.write_prices(now, &mut prices)?;
    prices.flush()?;
    let mut vm = create("variation_margin.csv")?;
    settlement.write_variation_margin(
        now,
        engine.accounts(),
        |a| tokens.names[a.0 as usize].clone(),
        &mut vm,
    )?;
    vm.flush()?;
    Ok(summary)
}

/// Applies one row to the engine. Rows the engine never sees (duplicate or
/// unknown tokens, unknown symbols) are answered here with the same reasons.
#[allow(clippy::too_many_arguments)]
fn apply(
    contracts: &ContractSet,
    engine: &mut Engine,
    limits: &Limits,
    now: Nanos,
    row: Row,
    sink: &mut crate::engine::Tee<'_, Recorder<'_>, impl EventSink>,
    file: &Path,
    lineno: usize,
) {
    match row {
        Row::Enter {
            account,
            token,
            symbol,
            side,
            qty,
            price,
            tif,
        } => {
            let account = sink
                .0
                .tokens
                .account(&account, engine.accounts_mut(), limits);
            let Some(tag) = sink.0.tokens.claim(account, &token) else {
                return sink.0.reject(account, &token, RejectReason::DuplicateToken);
            };
            let instrument = Symbol::new(&symbol).and_then(|s| contracts.by_symbol(&s));
            let Some(c) = instrument else {
                return sink
                    .0
                    .reject(account, &token, RejectReason::UnknownInstrument);
            };
            engine.enter(
                now,
                &NewOrder {
                    account,
                    tag,
                    instrument: c.id,
                    side,
                    price,
                    qty,
                    tif,
                },
                sink,
            );
        }
        Row::Cancel {
            account,
            token,
            qty,
        } => {
            let account = sink
                .0
                .tokens
                .account(&account, engine.accounts_mut(), limits);
            let Some(order) = sink.0.tokens.live_order(account, &token) else {
                return sink.0.reject(account, &token, RejectReason::UnknownOrder);
            };
            let tag = sink.0.tokens.used[&(account, token.clone())] as u64;
            engine.cancel(now, account, order, qty, tag, sink);
        }
        Row::Replace {
            account,
            old,
            new,
            qty,
            price,
        } => {
            let account = sink
                .0
                .tokens
                .account(&account, engine.accounts_mut(), limits);
            // As the exchange's gateway does: the order replaced is looked
            // up first (a replace naming its own new token is unknown), then
            // the new token is claimed, so a replace of an unknown order
            // uses its new token up like any other rejected request.
            let order = sink.0.tokens.live_order(account, &old);
            let Some(tag) = sink.0.tokens.claim(account, &new) else {
                return sink.0.reject(account, &new, RejectReason::DuplicateToken);
            };
            let Some(order) = order else {
                return sink.0.reject(account, &new, RejectReason::UnknownOrder);
            };
            engine.replace(now, account, order, tag, price, qty, sink);
            let tokens = &mut sink.0.tokens;
            if tokens.orders[tag as usize].2.is_some() {
                // The old token now names a finished order.
                let old_idx = tokens.used[&(account, old)];
                tokens.orders[old_idx].2 = None;
            }
        }
        Row::Phase { phase, symbol } => {
            let instrument = match symbol {
                None => None,
                Some(s) => match Symbol::new(&s).and_then(|s| contracts.by_symbol(&s)) {
                    Some(c) => Some(c.id),
                    None => {
                        eprintln!(
                            "{}:{lineno}: unknown symbol {s:?} in phase row; row skipped",
                            file.display()
                        );
                        return;
                    }
                },
            };
            engine.set_phase(now, instrument, phase, sink);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_every_action_parse() {
        assert!(matches!(
            parse_row("firm1,N,t1,TK2612,B,10,6.512,DAY"),
            Ok(Row::Enter { qty, tif: Tif::Day, side: Side::Buy, .. }) if qty.lots() == 10
        ));
        assert!(matches!(
            parse_row("firm1,C,t1,,,0,,"),
            Ok(Row::Cancel { .. })
        ));
        assert!(matches!(
            parse_row("firm1,R,t1>t2,,,5,6.513,"),
            Ok(Row::Replace { ref old, ref new, .. }) if old == "t1" && new == "t2"
        ));
        assert!(matches!(
            parse_row(",P,halt,TK2612,,,,"),
            Ok(Row::Phase {
                phase: Phase::Halt,
                symbol: Some(_)
            })
        ));
        assert!(matches!(
            parse_row(",P,open,,,,,"),
            Ok(Row::Phase {
                phase: Phase::Open,
                symbol: None
            })
        ));
    }

    #[test]
    fn malformed_rows_say_what_is_wrong() {
        let e = |l: &str| parse_row(l).unwrap_err().0;
        assert!(e("a,N,t,TK2612,B,10,6.5").contains("8 columns"));
        assert!(e("a,N,t,TK2612,X,10,6.5,DAY").contains("side"));
        assert!(e("a,N,t,TK2612,B,ten,6.5,DAY").contains("qty"));
        assert!(e("a,N,t,TK2612,B,10,6.5.1,DAY").contains("price"));
        assert!(e("a,N,t,TK2612,B,10,6.5,GTC").contains("tif"));
        assert!(e("a,Q,t,TK2612,B,10,6.5,DAY").contains("action"));
        assert!(e("a,R,t1,,,5,6.5,").contains("old>new"));
        assert!(e(",P,lunch,,,,,").contains("phase"));
    }
}

#[cfg(test)]
mod lifecycle_tests {
    use super::*;
    use crate::test_dir::TempDir;
    use crate::wire::itch::{self, Message};

    /// Replays `csv` over the shipped contracts; returns the scratch dir.
    fn replay(name: &str, csv: &str) -> TempDir {
        let dir = TempDir::new(name);
        let orders = dir.join("orders.csv");
        std::fs::write(&orders, csv).unwrap();
        run(&ReplayArgs {
            orders,
            out: dir.join("out"),
            contracts: Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts"),
            config: None,
        })
        .unwrap();
        dir
    }

    fn read(dir: &TempDir, f: &str) -> String {
        std::fs::read_to_string(dir.join("out").join(f)).unwrap()
    }

    #[test]
    fn a_replay_reopens_a_tripped_contract_through_a_reopening_call_at_the_last_trade() {
        // GH2612 (reference 2.150, band 5 %, breaker 10 % over 300 s)
        // trades 2.150, 2.250, 2.360, then 2.370 (10.2 % over 2.150): the
        // breaker halts it. The replay clock (1 us a row) never reaches
        // the end of the 120 s halt, so phase rows reopen it through a
        // call: bid 2.400 x 1, ask 2.300 x 1 pair one lot with no
        // imbalance at every price between; the reopening's reference is
        // the last trade, 2.370.
        let dir = replay(
            "replay-reopening",
            "account,action,token,symbol,side,qty,price,tif\n\
             s,N,s1,GH2612,S,1,2.150,DAY\n\
             b,N,b1,GH2612,B,1,2.150,DAY\n\
             s,N,s2,GH2612,S,1,2.250,DAY\n\
             b,N,b2,GH2612,B,1,2.250,DAY\n\
             s,N,s3,GH2612,S,1,2.360,DAY\n\
             b,N,b3,GH2612,B,1,2.360,DAY\n\
             s,N,s4,GH2612,S,1,2.370,DAY\n\
             b,N,b4,GH2612,B,1,2.370,DAY\n\
             s,N,s5,GH2612,S,1,2.370,DAY\n\
             ,P,auction,GH2612,,,,\n\
             b,N,b6,GH2612,B,1,2.400,DAY\n\
             s,N,s6,GH2612,S,1,2.300,DAY\n\
             ,P,open,GH2612,,,,\n",
        );
        // The halt held: s5 was refused.
        assert_eq!(
            read(&dir, "rejects.csv"),
            "account,token,reason\ns,s5,market-not-open\n"
        );
        let trades = read(&dir, "trades.csv");
        let last = trades.lines().last().unwrap();
        assert_eq!(last, "5,GH2612,2.370,1,s,s6,b,b6", "{trades}");
        let bin = std::fs::read(dir.join("out").join("itch.bin")).unwrap();
        let kinds: Vec<u8> = itch::stream(&bin)
            .map(Result::unwrap)
            .filter_map(|m| match m {
                Message::CrossTrade(c) => Some(c.cross_type),
                Message::Noii(n) => Some(n.imbalance().cross_type),
                _ => None,
            })
            .collect();
        assert!(!kinds.is_empty());
        assert!(kinds.iter().all(|&k| k == b'H'), "cross types {kinds:?}");
    }

    #[test]
    fn a_replace_of_an_unknown_order_uses_its_new_token_as_every_other_reject_does() {
        // A rejected Enter uses its token (t1 again is a duplicate), and
        // so does the exchange's gateway for a Replace naming an unknown
        // order (it claims the replacement token first): t2 again is a
        // duplicate too.
        let dir = replay(
            "replay-replace-token",
            "account,action,token,symbol,side,qty,price,tif\n\
             alpha,N,t1,NOSUCH,B,5,6.500,DAY\n\
             alpha,N,t1,TK2612,B,5,6.500,DAY\n\
             alpha,R,ghost>t2,,,5,6.500,\n\
             alpha,N,t2,TK2612,B,5,6.500,DAY\n",
        );
        assert_eq!(
            read(&dir, "rejects.csv"),
            "account,token,reason\n\
             alpha,t1,unknown-symbol\n\
             alpha,t1,duplicate-token\n\
             alpha,t2,unknown-order\n\
             alpha,t2,duplicate-token\n"
        );
    }
}
