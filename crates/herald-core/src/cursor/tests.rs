use proptest::prelude::*;

use super::*;

type Steps = Vec<Step<i64, i64>>;

fn rows(after: i64, through: i64, committed: i64) -> Vec<i64> {
    (after + 1..=through.min(committed)).collect()
}

#[test]
fn in_order_frames_are_written_at_once() {
    let mut c = Cursor::new(0, 4, 100);
    assert_eq!(c.live(1, 1), OnLive::Write(1));
    assert_eq!(c.live(2, 2), OnLive::Write(2));
    assert_eq!(c.live(2, 2), OnLive::Duplicate);
    assert_eq!(c.last(), 2);
}

#[test]
fn a_gap_is_read_while_later_frames_are_held() {
    let mut c = Cursor::new(0, 8, 100);
    assert_eq!(
        c.live(3, 3),
        OnLive::Read(Read::Rows {
            after: 0,
            through: 3
        })
    );
    // The queue keeps draining while the read is in flight.
    assert_eq!(c.live(4, 4), OnLive::Held);
    assert_eq!(c.live(1, 1), OnLive::Held);
    let steps: Steps = c.rows(rows(0, 3, 4), |r| *r);
    assert_eq!(
        steps,
        vec![
            Step::Write { seq: 1, frame: 1 },
            Step::Batch(vec![2]),
            Step::Write { seq: 3, frame: 3 },
            Step::Write { seq: 4, frame: 4 },
        ]
    );
    assert_eq!((c.last(), c.reading(), c.buffered()), (4, None, 0));
}

#[test]
fn a_frame_the_store_lacks_is_dropped_without_moving_the_cursor() {
    let mut c = Cursor::new(5, 8, 100);
    assert!(matches!(c.live(9, 9), OnLive::Read(_)));
    let steps: Steps = c.rows(rows(5, 9, 6), |r| *r);
    assert_eq!(
        steps,
        vec![Step::Batch(vec![6]), Step::NotCommitted { seq: 9 }]
    );
    assert_eq!((c.last(), c.reading()), (6, None));
    // The next real notification is written at once.
    assert_eq!(c.live(7, 7), OnLive::Write(7));
}

#[test]
fn a_frame_arriving_during_the_read_is_not_judged_by_it() {
    let mut c = Cursor::new(0, 8, 100);
    assert!(matches!(c.live(3, 3), OnLive::Read(_)));
    // Seq 5 arrives while the read for 1..=3 is in flight; the store had only up to 3.
    assert_eq!(c.live(5, 5), OnLive::Held);
    let steps: Steps = c.rows(rows(0, 3, 3), |r| *r);
    assert_eq!(
        steps,
        vec![
            Step::Batch(vec![1, 2]),
            Step::Write { seq: 3, frame: 3 },
            Step::Read(Read::Rows {
                after: 3,
                through: 5
            }),
        ]
    );
}

#[test]
fn a_full_buffer_evicts_the_highest_seq_and_reads_it_later() {
    let mut c = Cursor::new(0, 2, 100);
    assert!(matches!(c.live(2, 2), OnLive::Read(_)));
    assert_eq!(c.live(3, 3), OnLive::Held);
    // Full: 4 is owed, not buffered.
    assert_eq!(c.live(4, 4), OnLive::Held);
    assert_eq!(c.buffered(), 2);
    let steps: Steps = c.rows(rows(0, 3, 4), |r| *r);
    assert_eq!(
        steps,
        vec![
            Step::Batch(vec![1]),
            Step::Write { seq: 2, frame: 2 },
            Step::Write { seq: 3, frame: 3 },
            Step::Read(Read::Rows {
                after: 3,
                through: 4
            }),
        ]
    );
    let steps: Steps = c.rows(rows(3, 4, 4), |r| *r);
    assert_eq!(steps, vec![Step::Batch(vec![4])]);
    assert_eq!(c.last(), 4);
}

/// A frame evicted while a read is in flight is not forgotten when an older evicted seq (a
/// forged one here) proves uncommitted: the read's answer says nothing about the newer one.
#[test]
fn an_eviction_during_a_read_survives_a_forged_owed_seq() {
    let mut c = Cursor::new(0, 1, 1);
    assert_eq!(c.live(9, 9), OnLive::Read(Read::Latest { seq: 9 }));
    // The buffer holds one: 1 evicts 9, and 2 is evicted on arrival.
    assert_eq!(c.live(1, 1), OnLive::Held);
    assert_eq!(c.live(2, 2), OnLive::Held);
    let steps: Steps = c.latest(2);
    assert_eq!(
        steps,
        vec![
            Step::Write { seq: 1, frame: 1 },
            Step::Read(Read::Rows {
                after: 1,
                through: 2
            }),
        ]
    );
    let steps: Steps = c.rows(vec![2], |r| *r);
    assert_eq!(steps, vec![Step::Batch(vec![2])]);
    assert_eq!((c.last(), c.reading()), (2, None));
}

#[test]
fn a_gap_larger_than_the_resume_gap_resyncs_when_committed() {
    let mut c = Cursor::new(0, 8, 10);
    assert_eq!(c.live(50, 50), OnLive::Read(Read::Latest { seq: 50 }));
    let steps: Steps = c.latest(50);
    assert_eq!(
        steps,
        vec![
            Step::Resync { latest: 49 },
            Step::Write { seq: 50, frame: 50 }
        ]
    );
    // Not committed: dropped.
    assert_eq!(c.live(90, 90), OnLive::Read(Read::Latest { seq: 90 }));
    let steps: Steps = c.latest(51);
    assert_eq!(steps, vec![Step::NotCommitted { seq: 90 }]);
    assert_eq!((c.last(), c.reading()), (50, None));
    // A store that cannot answer drops the frame too.
    assert!(matches!(c.live(70, 70), OnLive::Read(_)));
    let steps: Steps = c.latest_failed();
    assert_eq!(steps, vec![Step::NotCommitted { seq: 70 }]);
}

#[test]
fn a_sync_during_a_read_is_not_written_twice() {
    let mut c = Cursor::new(0, 8, 100);
    assert!(matches!(c.live(3, 3), OnLive::Read(_)));
    c.advance_to(5);
    let steps: Steps = c.rows(rows(0, 3, 5), |r| *r);
    assert_eq!(steps, vec![Step::Duplicate]);
    assert_eq!((c.last(), c.reading()), (5, None));
}

#[test]
fn connect_starts_from_the_client_cursor_or_resyncs() {
    let s = start(Some(3), 7, 10, 100);
    assert_eq!((s.resume_from, s.resync, s.last), (3, None, 3));
    let s = start(None, 7, 10, 100);
    assert_eq!((s.resume_from, s.resync, s.last), (7, None, 7));
    let s = start(Some(12), 0, 10, 100);
    assert_eq!(
        (s.resume_from, s.resync, s.last),
        (10, Some(Resync::CursorAhead), 10)
    );
    let s = start(Some(0), 0, 500, 100);
    assert_eq!(
        (s.resume_from, s.resync, s.last),
        (0, Some(Resync::GapTooLarge), 500)
    );
}

#[derive(Debug, Clone)]
enum Op {
    /// The next notification commits and is published `copies` times (0: the bus lost it).
    Commit { copies: u8 },
    /// The bus delivers one of the published frames (any order).
    Deliver(usize),
    /// A frame for a seq no node published, beyond the next one (a forged frame for exactly
    /// the next seq is written like a real one: only the bus key keeps those out).
    Forge(u8),
    /// The read in flight is answered from what is committed now.
    Answer,
    /// The read in flight fails (only `Read::Latest` may fail without closing the socket).
    LatestFails,
    /// The socket catches up from the store on its own (after a bus loss).
    Sync,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..=2).prop_map(|copies| Op::Commit { copies }),
        6 => any::<usize>().prop_map(Op::Deliver),
        1 => any::<u8>().prop_map(Op::Forge),
        3 => Just(Op::Answer),
        1 => Just(Op::LatestFails),
        1 => Just(Op::Sync),
    ]
}

/// A user's store, the bus between it and one socket, and what the socket wrote.
struct Sim {
    cursor: Cursor<i64>,
    max_gap: i64,
    total: i64,
    committed: i64,
    bus: Vec<i64>,
    lost: bool,
    /// Highest seq the client has: written, or skipped over by a resync.
    mark: i64,
}

impl Sim {
    fn wrote(&mut self, seq: i64) {
        assert_eq!(seq, self.mark + 1, "written in order with no gap");
        assert!(seq <= self.committed, "only committed seqs are written");
        self.mark = seq;
    }

    fn resynced(&mut self, latest: i64) {
        assert!(
            latest - self.mark > self.max_gap,
            "resync only past the resume gap"
        );
        assert!(latest <= self.committed);
        self.mark = latest;
    }

    fn apply(&mut self, steps: Steps, failed: bool) {
        for step in steps {
            match step {
                Step::Write { seq, frame } => {
                    assert_eq!(seq, frame);
                    self.wrote(seq);
                }
                Step::Batch(rows) => rows.into_iter().for_each(|s| self.wrote(s)),
                Step::Resync { latest } => self.resynced(latest),
                Step::NotCommitted { seq } => {
                    assert!(failed || seq > self.total, "only forged seqs are refused")
                }
                Step::Duplicate => {}
                Step::Read(r) => assert_eq!(Some(r), self.cursor.reading()),
            }
        }
        assert_eq!(self.mark, self.cursor.last());
    }

    fn live(&mut self, seq: i64) {
        match self.cursor.live(seq, seq) {
            OnLive::Write(f) => {
                assert_eq!(f, seq);
                self.wrote(seq);
            }
            OnLive::Read(r) => assert_eq!(Some(r), self.cursor.reading()),
            OnLive::Duplicate | OnLive::Held => {}
        }
    }

    fn answer(&mut self) {
        let steps = match self.cursor.reading() {
            None => return,
            Some(Read::Rows { after, through }) => {
                assert!(through > after && through - after <= self.max_gap + 1);
                self.cursor
                    .rows(rows(after, through, self.committed), |r| *r)
            }
            Some(Read::Latest { .. }) => self.cursor.latest(self.committed),
        };
        self.apply(steps, false);
    }

    fn sync(&mut self) {
        let last = self.cursor.last();
        if self.committed > last {
            if self.committed - last > self.max_gap {
                self.resynced(self.committed);
            } else {
                (last + 1..=self.committed).for_each(|s| self.wrote(s));
            }
            self.cursor.advance_to(self.committed);
        }
    }

    fn step(&mut self, op: Op) {
        match op {
            Op::Commit { copies } => {
                if self.committed < self.total {
                    self.committed += 1;
                    self.lost |= copies == 0;
                    for _ in 0..copies {
                        self.bus.push(self.committed);
                    }
                }
            }
            Op::Deliver(i) => {
                if !self.bus.is_empty() {
                    let seq = self.bus.remove(i % self.bus.len());
                    self.live(seq);
                }
            }
            Op::Forge(k) => self.live(self.total + 2 + i64::from(k)),
            Op::Answer => self.answer(),
            Op::LatestFails => {
                if matches!(self.cursor.reading(), Some(Read::Latest { .. })) {
                    self.lost = true;
                    let steps = self.cursor.latest_failed();
                    self.apply(steps, true);
                }
            }
            Op::Sync => self.sync(),
        }
        assert!(self.cursor.buffered() <= self.cursor.cap);
    }

    fn settle(&mut self) {
        while !self.bus.is_empty() {
            self.step(Op::Deliver(0));
        }
        for _ in 0..10_000 {
            if self.cursor.reading().is_none() {
                return;
            }
            self.answer();
        }
        panic!("reads never settle");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// For any interleaving of commits, duplicated, reordered and forged live frames, reads
    /// and syncs: the socket is written its user's committed notifications in seq order with
    /// no gap and none twice, skipping only by a resync past the resume gap, and nothing
    /// forged. When the bus lost nothing, live frames alone bring it to the latest seq;
    /// otherwise the next sync does.
    #[test]
    fn every_committed_notification_is_written_once_in_order(
        total in 1i64..80,
        start in 0i64..3,
        cap in 1usize..10,
        max_gap in 1u32..25,
        ops in proptest::collection::vec(op(), 0..400),
    ) {
        let mut sim = Sim {
            cursor: Cursor::new(start, cap, max_gap),
            max_gap: i64::from(max_gap),
            total: total + start,
            committed: start,
            bus: Vec::new(),
            lost: false,
            mark: start,
        };
        for op in ops {
            sim.step(op);
        }
        sim.settle();
        if !sim.lost {
            prop_assert_eq!(sim.mark, sim.committed, "live frames alone caught up");
        }
        sim.sync();
        sim.settle();
        prop_assert_eq!(sim.mark, sim.committed);
        prop_assert_eq!(sim.cursor.buffered(), 0);
    }
}
