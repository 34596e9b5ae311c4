//! The engine's state as a snapshot holds it, and its rebuilding.
//!
//! Owns the mapping between the live engine (books, arena, lifecycle
//! timers, accounts) and [`EngineState`], a plain serde value. Only what
//! journal replay changes is captured; what comes from the contracts and
//! the config (price grids, schedules, limits' specs) is rebuilt by
//! [`Engine::new`] and must match, which the snapshot's fingerprint checks.
//! Nothing here runs on the order path.

use serde::{Deserialize, Serialize};

use super::book::{ArenaState, BookStateError, Level};
use super::protection::{Band, Breaker};
use super::{BreakerStage, CrossKind, Engine, Indicative, Phase};
use crate::accounts::{AccountsState, AccountsStateError};

/// One contract's lifecycle and book levels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketState {
    phase: Phase,
    reference: u32,
    last: u32,
    band: Band,
    breaker: Breaker,
    stage: BreakerStage,
    breaker_due: u64,
    sched_due: u64,
    cross_kind: CrossKind,
    published: Option<Indicative>,
    bids: Vec<(u32, Level)>,
    asks: Vec<(u32, Level)>,
}

/// Everything journal replay rebuilds in the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineState {
    match_number: u64,
    next_due: u64,
    arena: ArenaState,
    markets: Vec<MarketState>,
    accounts: AccountsState,
}

/// Why an engine could not be rebuilt from a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineStateError {
    #[error("the snapshot has {snapshot} contracts, this engine {engine}")]
    Contracts { snapshot: usize, engine: usize },
    #[error(transparent)]
    Book(#[from] BookStateError),
    #[error(transparent)]
    Accounts(#[from] AccountsStateError),
}

impl Engine {
    /// The engine's state (a pass over the used arena slots and the levels
    /// that hold orders).
    pub fn state(&self) -> EngineState {
        EngineState {
            match_number: self.match_number,
            next_due: self.next_due,
            arena: self.arena.state(),
            markets: self
                .markets
                .iter()
                .map(|m| MarketState {
                    phase: m.phase,
                    reference: m.reference,
                    last: m.last,
                    band: m.band,
                    breaker: m.breaker,
                    stage: m.stage,
                    breaker_due: m.breaker_due,
                    sched_due: m.sched_due,
                    cross_kind: m.cross_kind,
                    published: m.published,
                    bids: m.book.bids.state(),
                    asks: m.book.asks.state(),
                })
                .collect(),
            accounts: self.accounts.state(),
        }
    }

    /// Puts a freshly built engine (same contracts and config as the one
    /// the state came from) into `s`. On error the engine is unusable.
    pub fn restore(&mut self, s: &EngineState) -> Result<(), EngineStateError> {
        if s.markets.len() != self.markets.len() {
            return Err(EngineStateError::Contracts {
                snapshot: s.markets.len(),
                engine: self.markets.len(),
            });
        }
        self.arena.restore(&s.arena)?;
        for (m, st) in self.markets.iter_mut().zip(&s.markets) {
            m.phase = st.phase;
            m.reference = st.reference;
            m.last = st.last;
            m.band = st.band;
            m.breaker = st.breaker;
            m.stage = st.stage;
            m.breaker_due = st.breaker_due;
            m.sched_due = st.sched_due;
            m.cross_kind = st.cross_kind;
            m.published = st.published;
            m.book.bids.restore(&st.bids)?;
            m.book.asks.restore(&st.asks)?;
        }
        self.accounts.restore(&s.accounts)?;
        self.match_number = s.match_number;
        self.next_due = s.next_due;
        Ok(())
    }
}
