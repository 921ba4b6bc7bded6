//! A socket's delivery cursor: which of its user's notifications it still needs, decided with
//! no IO.
//!
//! Invariant: a socket receives its user's notifications in strictly increasing seq order,
//! each once, and only seqs the store has committed. [`Cursor::last`] is the highest seq
//! written. A live frame for `last + 1` is written at once; one further ahead waits in a
//! bounded reorder buffer while the gap before it is read from the store, and the socket
//! keeps taking live frames meanwhile, so a gap never stalls its queue. A live frame is not
//! taken on trust: seqs commit in order and a node publishes only after the commit, so a frame
//! whose seq the store lacks when it is read was not published by a node, and is dropped
//! without moving the cursor.
//!
//! The socket task drives it: it hands over live frames ([`Cursor::live`]), starts the one
//! store [`Read`] the cursor asks for, hands back its answer ([`Cursor::rows`],
//! [`Cursor::latest`]) and carries out the [`Step`]s returned. Writes the socket makes on its
//! own (connect catch-up, a sync after bus loss, a resync) are reported with
//! [`Cursor::advance_to`].
//!
//! Overflow policy of the reorder buffer (at most `cap` frames): the highest seq is evicted
//! and owed: once the frames before it are written, the cursor reads everything up to it
//! from the store instead.

use std::collections::BTreeMap;

/// A store read the cursor needs; at most one is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// The notifications `after + 1 ..= through`, oldest first (a limit of `through - after`):
    /// the gap and the buffered frames beyond it, to learn which of them are committed.
    Rows { after: i64, through: i64 },
    /// The user's latest committed seq: the gap before `seq` is larger than the resume gap,
    /// so the cursor resyncs to it if the store has it.
    Latest { seq: i64 },
}

/// What [`Cursor::live`] made of a live frame.
#[derive(Debug, PartialEq, Eq)]
pub enum OnLive<F> {
    /// The next seq: write this frame.
    Write(F),
    /// Already written (or already buffered): drop it.
    Duplicate,
    /// Buffered behind a gap; the read already in flight covers it or is followed by another.
    Held,
    /// Buffered behind a gap: start this read.
    Read(Read),
}

/// What the socket does after a read's answer, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<F, R> {
    /// Write this live frame.
    Write { seq: i64, frame: F },
    /// Write these store rows as one batch.
    Batch(Vec<R>),
    /// Write `resync` (gap too large) with this latest seq: the client reloads through HTTP.
    Resync { latest: i64 },
    /// A live frame whose seq the store did not have was dropped.
    NotCommitted { seq: i64 },
    /// A buffered frame that was already written was dropped.
    Duplicate,
    /// Start this read.
    Read(Read),
}

#[derive(Debug)]
struct Held<F> {
    frame: F,
    /// Reads started before it arrived: it was buffered when the read in flight started
    /// if this is less than [`Cursor::reads`].
    arrived: u64,
}

#[derive(Debug)]
pub struct Cursor<F> {
    last: i64,
    ahead: BTreeMap<i64, Held<F>>,
    /// The highest seq evicted from a full buffer, with when it arrived; 0 when none.
    /// The highest seq evicted from a full buffer that the read in flight (or the next one)
    /// judges: it arrived before that read started. 0 when none.
    owed: i64,
    /// The highest seq evicted that arrived while the read in flight runs: its answer says
    /// nothing about it (it may have committed since). Joins `owed` when the next read starts.
    owed_since: i64,
    reading: Option<Read>,
    /// Reads started so far.
    reads: u64,
    cap: usize,
    max_gap: i64,
}

impl<F> Cursor<F> {
    /// A cursor at `last` (everything up to it is written), buffering at most `cap` frames
    /// (at least 1), resyncing instead of reading a gap larger than `max_gap`.
    pub fn new(last: i64, cap: usize, max_gap: u32) -> Cursor<F> {
        Cursor {
            last,
            ahead: BTreeMap::new(),
            owed: 0,
            owed_since: 0,
            reading: None,
            reads: 0,
            cap: cap.max(1),
            max_gap: i64::from(max_gap.max(1)),
        }
    }

    /// The highest seq written.
    pub fn last(&self) -> i64 {
        self.last
    }

    /// The read in flight.
    pub fn reading(&self) -> Option<Read> {
        self.reading
    }

    /// Frames waiting behind a gap.
    pub fn buffered(&self) -> usize {
        self.ahead.len()
    }

    /// The socket wrote everything up to `seq` on its own (catch-up, sync, resync).
    pub fn advance_to(&mut self, seq: i64) {
        self.last = self.last.max(seq);
    }

    /// A live frame for `seq`.
    pub fn live(&mut self, seq: i64, frame: F) -> OnLive<F> {
        if seq <= self.last {
            return OnLive::Duplicate;
        }
        if self.reading.is_none() && seq == self.last + 1 {
            // Not reading means nothing is buffered: this is the common, in-order case.
            self.last = seq;
            return OnLive::Write(frame);
        }
        if self.ahead.contains_key(&seq) {
            return OnLive::Duplicate;
        }
        self.hold(seq, frame);
        if self.reading.is_some() {
            return OnLive::Held;
        }
        // Not reading, and `seq` is beyond `last + 1`: a read is due.
        match self.next_read() {
            Some(r) => OnLive::Read(r),
            None => OnLive::Held,
        }
    }

    /// The answer to [`Read::Rows`]: the committed notifications after `after`, oldest first,
    /// `seq` giving each one's seq.
    pub fn rows<R>(&mut self, rows: Vec<R>, seq: impl Fn(&R) -> i64) -> Vec<Step<F, R>> {
        let mut steps = Vec::new();
        let Some(Read::Rows { through, .. }) = self.reading.take() else {
            return steps;
        };
        let mut batch = Vec::new();
        for row in rows {
            let s = seq(&row);
            if s <= self.last {
                // Written meanwhile by a sync.
                continue;
            }
            match self.ahead.remove(&s) {
                Some(held) => {
                    if !batch.is_empty() {
                        steps.push(Step::Batch(std::mem::take(&mut batch)));
                    }
                    steps.push(Step::Write {
                        seq: s,
                        frame: held.frame,
                    });
                }
                None => batch.push(row),
            }
            self.last = s;
        }
        if !batch.is_empty() {
            steps.push(Step::Batch(batch));
        }
        // Anything up to `through` that was here when the read started and is not among the
        // rows is not committed: a legitimate frame's seq commits before it is published.
        let started = self.reads;
        // Rows are contiguous from `after + 1`, so `last` is now the newest committed seq
        // the read saw (or further, if a sync wrote more meanwhile).
        let from = self.last.saturating_add(1);
        let forged: Vec<i64> = if from <= through {
            self.ahead
                .range(from..=through)
                .filter(|(_, h)| h.arrived < started)
                .map(|(s, _)| *s)
                .collect()
        } else {
            Vec::new()
        };
        for s in forged {
            self.ahead.remove(&s);
            steps.push(Step::NotCommitted { seq: s });
        }
        if self.owed > self.last && self.owed <= through {
            self.owed = 0;
        }
        self.pump(&mut steps);
        steps
    }

    /// The answer to [`Read::Latest`]: the user's latest committed seq.
    pub fn latest<R>(&mut self, latest: i64) -> Vec<Step<F, R>> {
        let mut steps = Vec::new();
        let Some(Read::Latest { seq }) = self.reading.take() else {
            return steps;
        };
        if latest >= seq && seq > self.last {
            if self.ahead.contains_key(&seq) {
                // Resync to just before it; the frame itself follows.
                self.last = seq - 1;
            } else {
                // Owed: its frame was evicted, the client reloads through it.
                self.last = seq;
                self.owed = 0;
            }
            steps.push(Step::Resync { latest: self.last });
        } else if latest < seq {
            self.not_committed(seq, &mut steps);
        }
        // What was evicted before the read started and is legitimate had committed by then:
        // reading up to `latest` covers it.
        self.owed = self.owed.min(latest);
        self.pump(&mut steps);
        steps
    }

    /// [`Read::Latest`] could not be answered (the store is unavailable): the frame that
    /// asked is dropped, as if not committed; a later sync catches the socket up.
    pub fn latest_failed<R>(&mut self) -> Vec<Step<F, R>> {
        let mut steps = Vec::new();
        if let Some(Read::Latest { seq }) = self.reading.take() {
            self.not_committed(seq, &mut steps);
            if self.owed == seq {
                self.owed = 0;
            }
        }
        self.pump(&mut steps);
        steps
    }

    fn not_committed<R>(&mut self, seq: i64, steps: &mut Vec<Step<F, R>>) {
        if self.ahead.remove(&seq).is_some() {
            steps.push(Step::NotCommitted { seq });
        }
    }

    fn hold(&mut self, seq: i64, frame: F) {
        let arrived = self.reads;
        if self.ahead.len() >= self.cap {
            let highest = self.ahead.last_key_value().map_or(i64::MIN, |(s, _)| *s);
            if seq > highest {
                self.owe(seq, arrived);
                return;
            }
            if let Some((s, h)) = self.ahead.pop_last() {
                self.owe(s, h.arrived);
            }
        }
        self.ahead.insert(seq, Held { frame, arrived });
    }

    fn owe(&mut self, seq: i64, arrived: u64) {
        if self.reading.is_some() && arrived == self.reads {
            self.owed_since = self.owed_since.max(seq);
        } else {
            self.owed = self.owed.max(seq);
        }
    }

    /// With no read in flight: writes the buffered frames that are next in order, drops the
    /// ones already written, and starts the read the rest need.
    fn pump<R>(&mut self, steps: &mut Vec<Step<F, R>>) {
        if self.reading.is_some() {
            return;
        }
        while let Some(entry) = self.ahead.first_entry() {
            let s = *entry.key();
            if s <= self.last {
                entry.remove();
                steps.push(Step::Duplicate);
            } else if s == self.last + 1 {
                let held = entry.remove();
                self.last = s;
                steps.push(Step::Write {
                    seq: s,
                    frame: held.frame,
                });
            } else {
                break;
            }
        }
        if let Some(r) = self.next_read() {
            steps.push(Step::Read(r));
        }
    }

    /// The read the buffer (or an owed seq) needs, marked as started; `None` when the cursor
    /// is caught up. Called with no read in flight and nothing writable buffered.
    fn next_read(&mut self) -> Option<Read> {
        self.owed = self.owed.max(std::mem::take(&mut self.owed_since));
        if self.owed <= self.last {
            self.owed = 0;
        }
        let first = match self.ahead.first_key_value() {
            Some((s, _)) => *s,
            None if self.owed > 0 => self.owed,
            None => return None,
        };
        let read = if first - 1 - self.last > self.max_gap {
            Read::Latest { seq: first }
        } else {
            let furthest = self
                .ahead
                .last_key_value()
                .map_or(0, |(s, _)| *s)
                .max(self.owed);
            let through = furthest.min(self.last + 1 + self.max_gap).max(first);
            Read::Rows {
                after: self.last,
                through,
            }
        };
        self.reads += 1;
        self.reading = Some(read);
        Some(read)
    }
}

/// Where a socket starts, from the cursor the client sent (if any), the user's delivered
/// watermark and latest committed seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    /// The cursor the client resumes from (`resume_from` in `connected`).
    pub resume_from: i64,
    /// Send a resync first, and why.
    pub resync: Option<Resync>,
    /// The cursor after the resync, if any: catch up from here.
    pub last: i64,
}

/// Why a socket resyncs at connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resync {
    /// The client's cursor is past the user's latest seq (its store was reset).
    CursorAhead,
    /// More than the resume gap is missing: reload through HTTP.
    GapTooLarge,
}

/// Decides where a connecting socket starts.
pub fn start(client: Option<i64>, delivered: i64, latest: i64, max_gap: u32) -> Start {
    let cursor = client.unwrap_or(delivered);
    let resync = if cursor > latest {
        Some(Resync::CursorAhead)
    } else if latest - cursor > i64::from(max_gap) {
        Some(Resync::GapTooLarge)
    } else {
        None
    };
    Start {
        resume_from: cursor.min(latest),
        resync,
        last: if resync.is_some() { latest } else { cursor },
    }
}

#[cfg(test)]
mod tests;
