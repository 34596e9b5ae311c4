//! The order nodes: one 32-byte node per resting order, in one growable
//! arena with an intrusive free list, addressed by `u32` index.
//!
//! Owns node storage and reuse only: linking nodes into levels is
//! `side.rs`'s job and finding them by reference `order_index.rs`'s; it
//! must not allocate except to grow the arena to a new high.

use super::NIL;
use crate::types::Side;

/// One resting order; two per cache line.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub(super) struct Node {
    pub(super) reference: u64,
    pub(super) price: u32,
    pub(super) qty: u32,
    /// Ladder index, or `NIL` for a level in the fallback map.
    pub(super) level: u32,
    pub(super) prev: u32,
    /// Next in the level's FIFO; next free node while on the free list.
    pub(super) next: u32,
    /// Its book's position in `FeedBooks::books` (not the locate).
    pub(super) book: u16,
    pub(super) side: Side,
}

const _: () = assert!(std::mem::size_of::<Node>() == 32);

/// The nodes, with an intrusive free list through `next`.
#[derive(Debug, Clone)]
pub(super) struct Pool {
    pub(super) nodes: Vec<Node>,
    free: u32,
}

impl Pool {
    pub(super) fn new() -> Pool {
        Pool {
            nodes: Vec::new(),
            free: NIL,
        }
    }

    #[inline]
    pub(super) fn alloc(&mut self, node: Node) -> u32 {
        if self.free != NIL {
            let i = self.free;
            self.free = self.nodes[i as usize].next;
            self.nodes[i as usize] = node;
            i
        } else {
            self.nodes.push(node);
            (self.nodes.len() - 1) as u32
        }
    }

    #[inline]
    pub(super) fn release(&mut self, i: u32) {
        self.nodes[i as usize].next = self.free;
        self.free = i;
    }

    pub(super) fn clear(&mut self) {
        self.nodes.clear();
        self.free = NIL;
    }
}
