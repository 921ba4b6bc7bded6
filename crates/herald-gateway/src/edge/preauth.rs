//! The budget of sockets that have not authenticated yet.
//!
//! Unauthenticated sockets cost a node the same as real ones but prove nothing, so they get a
//! small budget of their own (`HERALD_MAX_PREAUTH_SOCKETS`) instead of crowding out users:
//! when the budget is full, or the node is at its socket cap, the **oldest** unauthenticated
//! socket is evicted (closed with 4102) to make room. A socket that authenticates with its
//! upgrade's `Authorization` header never enters the budget; one that sends `auth` leaves it
//! the moment its token is verified.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

pub struct PreAuthBudget {
    budget: usize,
    /// Oldest first.
    waiting: Mutex<VecDeque<(u64, CancellationToken)>>,
}

/// A place in the budget; dropped when the socket authenticates or ends.
pub struct PreAuthTicket {
    owner: Arc<PreAuthBudget>,
    id: u64,
    /// Cancelled when this socket is evicted.
    pub evicted: CancellationToken,
}

impl Drop for PreAuthTicket {
    fn drop(&mut self) {
        let mut w = self.owner.lock();
        if let Some(i) = w.iter().position(|(id, _)| *id == self.id) {
            w.remove(i);
        }
    }
}

impl PreAuthBudget {
    pub fn new(budget: usize) -> Arc<PreAuthBudget> {
        Arc::new(PreAuthBudget {
            budget: budget.max(1),
            waiting: Mutex::new(VecDeque::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, CancellationToken)>> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Enters socket `id`, evicting the oldest waiting socket if the budget is full. Returns
    /// the ticket and whether someone was evicted.
    pub fn enter(self: &Arc<Self>, id: u64) -> (PreAuthTicket, bool) {
        let evicted = CancellationToken::new();
        let mut w = self.lock();
        let mut made_room = false;
        while w.len() >= self.budget {
            if let Some((_, old)) = w.pop_front() {
                old.cancel();
                made_room = true;
            }
        }
        w.push_back((id, evicted.clone()));
        drop(w);
        (
            PreAuthTicket {
                owner: self.clone(),
                id,
                evicted,
            },
            made_room,
        )
    }

    /// Evicts the oldest waiting socket (the node is full); false when none is waiting.
    pub fn evict_oldest(&self) -> bool {
        match self.lock().pop_front() {
            Some((_, t)) => {
                t.cancel();
                true
            }
            None => false,
        }
    }

    pub fn waiting(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_is_evicted_first_and_tickets_leave_on_drop() {
        let b = PreAuthBudget::new(2);
        let (t1, e1) = b.enter(1);
        let (t2, e2) = b.enter(2);
        assert!(!e1 && !e2);
        let (t3, e3) = b.enter(3);
        assert!(e3, "the budget was full");
        assert!(t1.evicted.is_cancelled(), "the oldest went");
        assert!(!t2.evicted.is_cancelled() && !t3.evicted.is_cancelled());
        drop(t2); // authenticated
        assert_eq!(b.waiting(), 1);
        assert!(b.evict_oldest());
        assert!(t3.evicted.is_cancelled());
        assert!(!b.evict_oldest(), "nobody left");
        drop((t1, t3));
        assert_eq!(b.waiting(), 0);
    }
}
