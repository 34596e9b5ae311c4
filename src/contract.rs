//! Contract specifications: loading `contracts/*.toml` and deriving the
//! numbers the engine needs (tick, daily price limits, maximum order size,
//! self-trade prevention mode, trading schedule, dynamic band and circuit
//! breaker, position limit, margin rate, settlement window).
//!
//! Owns the file schema of DESIGN.md ("Contracts") and its validation. Every
//! error names the file and the key at fault. Does not hold any trading state.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::schedule::Schedule;
use crate::types::{InstrumentId, Price, Qty, Symbol};

/// Self-trade prevention: what happens when an incoming order would trade
/// against a resting order of the same account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StpMode {
    /// Remove the resting order and keep matching (the default).
    CancelResting,
    /// Cancel what is left of the incoming order.
    CancelIncoming,
    /// Cancel both the resting order and what is left of the incoming one.
    CancelBoth,
}

/// How a contract's prices are protected beyond the daily limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Protection {
    /// Fixed daily limits around the reference price (TK contracts).
    #[default]
    DailyLimit,
    /// A dynamic band around the last trade, with a circuit breaker (GH/GB).
    DynamicBand,
}

/// One contract, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Contract {
    pub id: InstrumentId,
    pub symbol: Symbol,
    /// What the contract is on, for people (e.g. "H100 GPU-hour rental index").
    pub underlying: String,
    /// Quote currency, e.g. "CNY" or "USD".
    pub currency: String,
    /// Size of one lot in underlying units (e.g. 10,000 M tokens, 1,000 GPU-hours).
    pub lot_size: u64,
    pub lot_unit: String,
    /// Previous settlement price.
    pub reference_price: Price,
    pub tick: Price,
    /// Daily limit, percent of `reference_price`, already doubled on listing day.
    pub limit_pct: u32,
    pub max_order_qty: Qty,
    pub stp: StpMode,
    pub protection: Protection,
    /// Dynamic band, percent around the last trade or reference (DynamicBand only).
    pub band_pct: u32,
    /// Margin rate in percent of notional.
    pub margin_pct: u32,
    /// Lowest and highest price allowed today, on the tick grid.
    pub lower_limit: Price,
    pub upper_limit: Price,
    /// The day's phase changes (empty: the phase is set by hand only).
    pub schedule: Schedule,
    /// Circuit breaker: a trade more than this percent away from any trade
    /// of the last `breaker_window_s` seconds halts the contract (0 = off).
    pub breaker_pct: u32,
    pub breaker_window_s: u32,
    /// How long a circuit-breaker halt lasts before the reopening call.
    pub halt_s: u32,
    /// How long the reopening call auction lasts before the uncross.
    pub reopen_auction_s: u32,
    /// Largest worst-case net position per account, lots (0 = none).
    pub position_limit: u32,
    /// Settlement price: VWAP of the last `settlement_window_s` seconds
    /// before the close, or of the whole day when 0.
    pub settlement_window_s: u32,
}

impl Contract {
    /// Number of price levels between the daily limits, inclusive.
    pub fn ladder_levels(&self) -> u32 {
        (self.upper_limit.raw() - self.lower_limit.raw()) / self.tick.raw() + 1
    }

    /// Decimal places needed to print any price on this contract's tick grid.
    pub fn price_decimals(&self) -> u32 {
        self.tick.significant_decimals()
    }
}

/// Why a contract file is rejected; always names the file.
#[derive(Debug)]
pub enum ContractError {
    Io {
        file: PathBuf,
        error: std::io::Error,
    },
    /// The contracts directory itself cannot be read (most often: tokex was
    /// started outside the repository, and `contracts` is relative).
    Dir { dir: PathBuf, error: std::io::Error },
    /// TOML syntax or a key of the wrong type; `message` names the key.
    Parse { file: PathBuf, message: String },
    /// A key whose value breaks a rule.
    Invalid {
        file: PathBuf,
        symbol: String,
        key: &'static str,
        reason: String,
    },
    /// No contract in any file.
    Empty { dir: PathBuf },
}

impl fmt::Display for ContractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContractError::Io { file, error } => write!(f, "{}: {error}", file.display()),
            ContractError::Dir { dir, error } => write!(
                f,
                "the contracts directory {}: {error} (a relative path is read from the \
                 current directory: run tokex from the repository's top level)",
                dir.display()
            ),
            ContractError::Parse { file, message } => {
                write!(f, "{}: {}", file.display(), message.trim_end())
            }
            ContractError::Invalid {
                file,
                symbol,
                key,
                reason,
            } => write!(
                f,
                "{}: contract {symbol:?}: key `{key}`: {reason}",
                file.display()
            ),
            ContractError::Empty { dir } => {
                write!(f, "{}: no [[contract]] tables found", dir.display())
            }
        }
    }
}

impl std::error::Error for ContractError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRepr {
    #[serde(default)]
    contract: Vec<ContractRepr>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContractRepr {
    symbol: String,
    reference_price: String,
    tick: String,
    limit_pct: u32,
    max_order_qty: u32,
    #[serde(default = "default_stp")]
    stp: StpMode,
    #[serde(default)]
    underlying: String,
    #[serde(default)]
    currency: String,
    #[serde(default = "default_lot_size")]
    lot_size: u64,
    #[serde(default)]
    lot_unit: String,
    #[serde(default)]
    listing_day: bool,
    #[serde(default)]
    protection: Protection,
    #[serde(default = "default_band_pct")]
    band_pct: u32,
    #[serde(default = "default_margin_pct")]
    margin_pct: u32,
    #[serde(default)]
    schedule: Vec<String>,
    #[serde(default)]
    breaker_pct: u32,
    #[serde(default = "default_breaker_window_s")]
    breaker_window_s: u32,
    #[serde(default = "default_halt_s")]
    halt_s: u32,
    #[serde(default = "default_reopen_auction_s")]
    reopen_auction_s: u32,
    #[serde(default)]
    position_limit: u32,
    #[serde(default)]
    settlement_window_s: u32,
}

fn default_stp() -> StpMode {
    StpMode::CancelResting
}
fn default_lot_size() -> u64 {
    1
}
fn default_band_pct() -> u32 {
    5
}
fn default_margin_pct() -> u32 {
    10
}
fn default_breaker_window_s() -> u32 {
    60
}
fn default_halt_s() -> u32 {
    120
}
fn default_reopen_auction_s() -> u32 {
    30
}

/// The contracts of a trading day, indexed by [`InstrumentId`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ContractSet {
    contracts: Vec<Contract>,
}

impl ContractSet {
    /// The contracts shipped in `contracts/`, for unit tests.
    #[cfg(test)]
    pub(crate) fn shipped() -> ContractSet {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts");
        ContractSet::load_dir(&dir).expect("the shipped contracts load")
    }

    /// Loads every `*.toml` file of `dir`, in file-name order; instruments are
    /// numbered in that order, contracts within a file in file order.
    pub fn load_dir(dir: &Path) -> Result<ContractSet, ContractError> {
        let entries = std::fs::read_dir(dir).map_err(|error| ContractError::Dir {
            dir: dir.to_path_buf(),
            error,
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        let mut set = ContractSet::default();
        for file in &files {
            let text = std::fs::read_to_string(file).map_err(|error| ContractError::Io {
                file: file.clone(),
                error,
            })?;
            set.add_toml(file, &text)?;
        }
        if set.contracts.is_empty() {
            return Err(ContractError::Empty {
                dir: dir.to_path_buf(),
            });
        }
        Ok(set)
    }

    /// Parses one file's text and appends its contracts; `file` is used in errors.
    pub fn add_toml(&mut self, file: &Path, text: &str) -> Result<(), ContractError> {
        let repr: FileRepr = toml::from_str(text).map_err(|e| ContractError::Parse {
            file: file.to_path_buf(),
            message: e.to_string(),
        })?;
        for c in repr.contract {
            let contract = self.validate(file, c)?;
            self.contracts.push(contract);
        }
        Ok(())
    }

    fn validate(&self, file: &Path, c: ContractRepr) -> Result<Contract, ContractError> {
        let bad = |key: &'static str, reason: String| ContractError::Invalid {
            file: file.to_path_buf(),
            symbol: c.symbol.clone(),
            key,
            reason,
        };
        let symbol = Symbol::new(&c.symbol).ok_or_else(|| {
            bad(
                "symbol",
                "must be 1 to 8 printable ASCII characters without spaces".into(),
            )
        })?;
        if self.contracts.iter().any(|x| x.symbol == symbol) {
            return Err(bad("symbol", "defined twice".into()));
        }
        let tick: Price = c
            .tick
            .parse()
            .map_err(|e| bad("tick", format!("{e}: {:?}", c.tick)))?;
        if tick == Price::ZERO {
            return Err(bad("tick", "must be positive".into()));
        }
        let reference_price: Price = c
            .reference_price
            .parse()
            .map_err(|e| bad("reference_price", format!("{e}: {:?}", c.reference_price)))?;
        if !reference_price.is_multiple_of(tick) || reference_price == Price::ZERO {
            return Err(bad(
                "reference_price",
                format!(
                    "{} is not a positive multiple of the tick {}",
                    reference_price, tick
                ),
            ));
        }
        if c.limit_pct == 0 || c.limit_pct >= 100 {
            return Err(bad("limit_pct", "must be between 1 and 99".into()));
        }
        if c.max_order_qty == 0 {
            return Err(bad("max_order_qty", "must be positive".into()));
        }
        if c.lot_size == 0 {
            return Err(bad("lot_size", "must be positive".into()));
        }
        if c.band_pct == 0 || c.band_pct >= 100 {
            return Err(bad("band_pct", "must be between 1 and 99".into()));
        }
        if c.margin_pct == 0 || c.margin_pct > 100 {
            return Err(bad("margin_pct", "must be between 1 and 100".into()));
        }
        if c.breaker_pct >= 100 {
            return Err(bad("breaker_pct", "must be below 100 (0 = off)".into()));
        }
        if c.breaker_pct > 0 && (c.breaker_window_s == 0 || c.halt_s == 0) {
            return Err(bad(
                "breaker_window_s",
                "the window and halt_s must be positive when breaker_pct is set".into(),
            ));
        }
        let schedule = Schedule::parse(&c.schedule).map_err(|e| bad("schedule", e.to_string()))?;
        let limit_pct = if c.listing_day {
            (c.limit_pct * 2).min(99)
        } else {
            c.limit_pct
        };
        let (lower_limit, upper_limit) = daily_limits(reference_price, tick, limit_pct);
        if upper_limit <= reference_price {
            // The limits round inwards to the tick: less than a tick each
            // way leaves the reference as the only price that can trade.
            return Err(bad(
                "limit_pct",
                format!(
                    "{limit_pct}% of the reference price {reference_price} is less than \
                     the tick {tick}: no price but the reference would be inside the limits"
                ),
            ));
        }
        if c.protection == Protection::DynamicBand
            && u64::from(lower_limit.raw()) * u64::from(c.band_pct) < u64::from(tick.raw()) * 100
        {
            // A band under a tick each way around its anchor refuses every
            // aggressive order at another price: the price could never move.
            return Err(bad(
                "band_pct",
                format!(
                    "{}% of the lower limit {lower_limit} is less than the tick {tick}: \
                     the band would hold the price where it is",
                    c.band_pct
                ),
            ));
        }
        let levels = (upper_limit.raw() - lower_limit.raw()) / tick.raw() + 1;
        // The ladder is a dense array; keep one book within a sane memory budget.
        const MAX_LEVELS: u32 = 1 << 20;
        if levels > MAX_LEVELS {
            return Err(bad(
                "tick",
                format!("{levels} price levels between the limits (at most {MAX_LEVELS})"),
            ));
        }
        let id = u16::try_from(self.contracts.len())
            .map(InstrumentId)
            .map_err(|_| bad("symbol", "more than 65,535 contracts".into()))?;
        Ok(Contract {
            id,
            symbol,
            underlying: c.underlying,
            currency: c.currency,
            lot_size: c.lot_size,
            lot_unit: c.lot_unit,
            reference_price,
            tick,
            limit_pct,
            max_order_qty: Qty::new(c.max_order_qty),
            stp: c.stp,
            protection: c.protection,
            band_pct: c.band_pct,
            margin_pct: c.margin_pct,
            lower_limit,
            upper_limit,
            schedule,
            breaker_pct: c.breaker_pct,
            breaker_window_s: c.breaker_window_s,
            halt_s: c.halt_s,
            reopen_auction_s: c.reopen_auction_s,
            position_limit: c.position_limit,
            settlement_window_s: c.settlement_window_s,
        })
    }

    pub fn len(&self) -> usize {
        self.contracts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.contracts.is_empty()
    }

    pub fn get(&self, id: InstrumentId) -> Option<&Contract> {
        self.contracts.get(usize::from(id.0))
    }

    /// Looks a contract up by symbol (a linear scan: contract lists are short
    /// and this runs at session set-up, not per order).
    pub fn by_symbol(&self, symbol: &Symbol) -> Option<&Contract> {
        self.contracts.iter().find(|c| &c.symbol == symbol)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Contract> {
        self.contracts.iter()
    }
}

/// Daily limits: `reference ± pct%`, rounded inwards to the tick grid.
pub fn daily_limits(reference: Price, tick: Price, pct: u32) -> (Price, Price) {
    let r = u64::from(reference.raw());
    let t = u64::from(tick.raw());
    let delta = r * u64::from(pct) / 100;
    let lo = r.saturating_sub(delta).max(t);
    let lo = lo.div_ceil(t) * t;
    let hi = (r + delta).min(u64::from(u32::MAX));
    let hi = hi / t * t;
    // Both fit in u32: lo <= r and hi is capped above.
    (Price::from_raw(lo as u32), Price::from_raw(hi as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<ContractSet, ContractError> {
        let mut set = ContractSet::default();
        set.add_toml(Path::new("contracts/test.toml"), text)?;
        Ok(set)
    }

    const TK: &str = r#"
[[contract]]
symbol = "TK2612"
reference_price = "6.500"
tick = "0.001"
limit_pct = 8
max_order_qty = 1000
stp = "cancel-resting"
"#;

    #[test]
    fn daily_limits_are_reference_plus_minus_pct_on_the_tick_grid() {
        let set = load(TK).unwrap();
        let c = set.by_symbol(&Symbol::new("TK2612").unwrap()).unwrap();
        assert_eq!(c.lower_limit.to_string(), "5.98");
        assert_eq!(c.upper_limit.to_string(), "7.02");
        assert_eq!(c.ladder_levels(), 1041);
        assert_eq!(c.price_decimals(), 3);
        assert_eq!(c.stp, StpMode::CancelResting);
    }

    #[test]
    fn listing_day_doubles_the_daily_limit() {
        let set = load(&format!("{TK}listing_day = true\n")).unwrap();
        let c = set.get(InstrumentId(0)).unwrap();
        assert_eq!(c.limit_pct, 16);
        assert_eq!(c.lower_limit.to_string(), "5.46");
    }

    #[test]
    fn limits_round_inwards_to_the_tick() {
        let (lo, hi) = daily_limits(Price::from_raw(65_010), Price::from_raw(10), 8);
        // 6.501 * 0.92 = 5.98092 -> 5.981 ; 6.501 * 1.08 = 7.02108 -> 7.021
        assert_eq!(lo.to_string(), "5.981");
        assert_eq!(hi.to_string(), "7.021");
    }

    #[test]
    fn a_missing_contracts_directory_says_how_relative_paths_are_read() {
        let err = ContractSet::load_dir(Path::new("no-such-contracts-dir")).unwrap_err();
        assert!(matches!(err, ContractError::Dir { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with("the contracts directory no-such-contracts-dir: "),
            "{msg}"
        );
        assert!(msg.contains("repository's top level"), "{msg}");
    }

    #[test]
    fn bad_price_names_the_file_and_the_key() {
        let err = load(&TK.replace("\"6.500\"", "\"6.5x\"")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("contracts/test.toml"), "{msg}");
        assert!(msg.contains("reference_price"), "{msg}");
    }

    #[test]
    fn price_off_the_tick_is_rejected() {
        let err = load(&TK.replace("\"6.500\"", "\"6.5005\"")).unwrap_err();
        assert!(err.to_string().contains("not a positive multiple"), "{err}");
    }

    #[test]
    fn missing_key_names_the_key() {
        let err = load(&TK.replace("max_order_qty = 1000\n", "")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("max_order_qty"), "{msg}");
        assert!(msg.contains("contracts/test.toml"), "{msg}");
    }

    #[test]
    fn unknown_key_and_bad_stp_are_rejected() {
        assert!(load(&format!("{TK}colour = \"red\"\n")).is_err());
        let err = load(&TK.replace("cancel-resting", "cancel-nothing")).unwrap_err();
        assert!(err.to_string().contains("stp"), "{err}");
    }

    #[test]
    fn duplicate_symbol_is_rejected() {
        let err = load(&format!("{TK}{TK}")).unwrap_err();
        assert!(err.to_string().contains("defined twice"), "{err}");
    }

    #[test]
    fn schedule_and_breaker_keys_are_read_and_checked() {
        let set = load(&format!(
            "{TK}schedule = [\"08:55 auction\", \"09:00 open\", \"15:00 close\"]\n\
             breaker_pct = 7\nposition_limit = 300\nsettlement_window_s = 600\n"
        ))
        .unwrap();
        let c = set.get(InstrumentId(0)).unwrap();
        assert_eq!(c.schedule.entries().len(), 3);
        assert_eq!((c.breaker_pct, c.breaker_window_s, c.halt_s), (7, 60, 120));
        assert_eq!((c.position_limit, c.settlement_window_s), (300, 600));
        let err = load(&format!("{TK}schedule = [\"9:00 open\"]\n")).unwrap_err();
        assert!(err.to_string().contains("schedule"), "{err}");
        let err = load(&format!("{TK}breaker_pct = 5\nhalt_s = 0\n")).unwrap_err();
        assert!(err.to_string().contains("breaker_window_s"), "{err}");
    }

    #[test]
    fn daily_limits_narrower_than_one_tick_are_refused() {
        // 8 % of 0.010 is 0.0008, under the 0.001 tick: both limits would
        // round to the reference, and no other price could ever trade.
        let err = load(&TK.replace("\"6.500\"", "\"0.010\"")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("limit_pct"), "{msg}");
        // Doubled on a listing day, 0.0016 is a tick each way: accepted.
        let set = load(&format!(
            "{}listing_day = true\n",
            TK.replace("\"6.500\"", "\"0.010\"")
        ))
        .unwrap();
        let c = set.get(InstrumentId(0)).unwrap();
        assert_eq!((c.lower_limit.raw(), c.upper_limit.raw()), (90, 110));
    }

    #[test]
    fn a_dynamic_band_narrower_than_one_tick_is_refused() {
        // 1 % of 0.040 (the lower limit of 0.050 ± 20 %) is 0.0004, under
        // the 0.001 tick: around a trade there, a buy one tick higher and a
        // sell one tick lower are both outside the band.
        let gh = "[[contract]]\nsymbol = \"GH2612\"\nreference_price = \"0.050\"\n\
                  tick = \"0.001\"\nlimit_pct = 20\nmax_order_qty = 500\n\
                  protection = \"dynamic-band\"\n";
        let err = load(&format!("{gh}band_pct = 1\n")).unwrap_err();
        assert!(err.to_string().contains("band_pct"), "{err}");
        load(&format!("{gh}band_pct = 3\n")).unwrap();
    }

    #[test]
    fn shipped_contracts_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts");
        let set = ContractSet::load_dir(&dir).unwrap();
        assert!(set.len() >= 5);
        for c in set.iter() {
            assert!(c.lower_limit < c.reference_price && c.reference_price < c.upper_limit);
        }
    }
}
