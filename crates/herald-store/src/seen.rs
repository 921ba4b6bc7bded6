//! The seen watermark (`user_state.seen_seq`): raising it, and the rule for a requested value.

use herald_protocol::http::SeenResult;

use crate::error::StoreError;
use crate::rows::get;
use crate::sql;
use crate::Store;

/// What raising the watermark did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeenOutcome {
    /// The watermark as it stands (raised when `changed`).
    Done(SeenResult),
    /// The requested seq is beyond the user's latest seq (`latest`); nothing changed.
    Ahead { latest: i64 },
}

/// Whether `seq` is acceptable as a seen watermark for a user whose latest seq is `latest`
/// (pure; the store re-checks under the row lock).
pub fn seen_seq_valid(seq: i64, latest: i64) -> bool {
    (0..=latest).contains(&seq)
}

impl Store {
    /// Raises the user's seen watermark to `seq` (never lowers it). Idempotent: a `seq` at or
    /// below the watermark gives `changed: false` and no version bump. A negative `seq` or one
    /// above the user's latest seq changes nothing and gives [`SeenOutcome::Ahead`] (for a
    /// negative seq too: the caller refuses those before calling).
    pub async fn mark_seen(&self, user_id: &str, seq: i64) -> Result<SeenOutcome, StoreError> {
        const OP: &str = "mark_seen";
        if seq < 0 {
            return Ok(SeenOutcome::Ahead { latest: 0 });
        }
        let rows = self.query(OP, sql::MARK_SEEN, &[&user_id, &seq]).await?;
        let Some(row) = rows.first() else {
            // No user_state row: nothing was ever published to the user.
            return Ok(if seq == 0 {
                SeenOutcome::Done(SeenResult {
                    seen_seq: 0,
                    changed: false,
                    version: 0,
                })
            } else {
                SeenOutcome::Ahead { latest: 0 }
            });
        };
        let latest: i64 = get(row, OP, "last_seq")?;
        if !seen_seq_valid(seq, latest) {
            return Ok(SeenOutcome::Ahead { latest });
        }
        Ok(SeenOutcome::Done(SeenResult {
            seen_seq: get(row, OP, "seen_seq")?,
            changed: get(row, OP, "changed")?,
            version: get(row, OP, "version")?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_iff_within_zero_and_latest() {
        for latest in 0..20 {
            for seq in -3..25 {
                assert_eq!(seen_seq_valid(seq, latest), seq >= 0 && seq <= latest);
            }
        }
    }
}
