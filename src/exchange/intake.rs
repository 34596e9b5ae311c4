//! How one batch of the engine loop is shared between the order port (UDP
//! or AF_XDP datagrams) and the TCP compatibility port's queue. The order
//! port goes first, but when TCP packets wait it may take only what leaves
//! them up to half the batch, and TCP takes whatever the port leaves: a
//! flood on either side at the engine's full capacity leaves the other
//! half of every batch, and a side with nothing waiting costs the other
//! nothing.

/// Datagrams and TCP packets one batch took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Taken {
    pub(super) udp: usize,
    pub(super) tcp: usize,
}

/// The share of batches: which side has the odd input of an odd batch
/// (with a batch of one, whole batches alternate).
#[derive(Debug, Default)]
pub(super) struct Intake {
    tcp_has_the_odd_one: bool,
}

impl Intake {
    /// Takes one batch of at most `batch` inputs when `tcp_waiting` TCP
    /// packets are queued: `udp(state, max)` handles at most `max`
    /// datagrams and says how many it handled; `tcp(state)` handles one
    /// TCP packet and says whether there was one.
    pub(super) fn take_batch<S, E>(
        &mut self,
        batch: usize,
        tcp_waiting: usize,
        state: &mut S,
        mut udp: impl FnMut(&mut S, usize) -> Result<usize, E>,
        mut tcp: impl FnMut(&mut S) -> bool,
    ) -> Result<Taken, E> {
        let mut kept_for_tcp = 0;
        if tcp_waiting > 0 {
            let half = (batch + usize::from(self.tcp_has_the_odd_one)) / 2;
            kept_for_tcp = tcp_waiting.min(half);
            self.tcp_has_the_odd_one = !self.tcp_has_the_odd_one;
        }
        let mut taken = Taken {
            udp: udp(state, batch - kept_for_tcp)?,
            tcp: 0,
        };
        while taken.udp + taken.tcp < batch && tcp(state) {
            taken.tcp += 1;
        }
        Ok(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    /// Two queues of waiting inputs, and the order in which a batch
    /// handled them.
    #[derive(Default)]
    struct Waiting {
        udp: usize,
        tcp: usize,
        handled: Vec<&'static str>,
    }

    fn one_batch(intake: &mut Intake, batch: usize, w: &mut Waiting) -> Taken {
        let tcp_waiting = w.tcp;
        intake
            .take_batch::<_, Infallible>(
                batch,
                tcp_waiting,
                w,
                |w, max| {
                    let n = w.udp.min(max);
                    w.udp -= n;
                    w.handled.extend(std::iter::repeat_n("udp", n));
                    Ok(n)
                },
                |w| {
                    let some = w.tcp > 0;
                    if some {
                        w.tcp -= 1;
                        w.handled.push("tcp");
                    }
                    some
                },
            )
            .unwrap()
    }

    #[test]
    fn a_udp_flood_at_full_capacity_leaves_tcp_half_of_every_batch() {
        let mut intake = Intake::default();
        let mut w = Waiting {
            udp: usize::MAX / 2,
            tcp: 100,
            ..Waiting::default()
        };
        let mut batches = 0;
        while w.tcp > 0 {
            let t = one_batch(&mut intake, 64, &mut w);
            assert_eq!(t.udp + t.tcp, 64);
            assert!(t.udp >= 32, "{t:?}");
            batches += 1;
        }
        assert_eq!(batches, 4, "32 + 32 + 32 + 4 TCP packets");
    }

    #[test]
    fn a_tcp_flood_leaves_udp_half_of_every_batch() {
        let mut intake = Intake::default();
        let mut w = Waiting {
            udp: 1_000,
            tcp: usize::MAX / 2,
            ..Waiting::default()
        };
        for _ in 0..10 {
            assert_eq!(
                one_batch(&mut intake, 64, &mut w),
                Taken { udp: 32, tcp: 32 }
            );
        }
    }

    #[test]
    fn a_side_with_nothing_waiting_leaves_the_other_the_whole_batch() {
        let mut intake = Intake::default();
        let mut w = Waiting {
            udp: 1_000,
            ..Waiting::default()
        };
        assert_eq!(
            one_batch(&mut intake, 64, &mut w),
            Taken { udp: 64, tcp: 0 }
        );
        let mut w = Waiting {
            tcp: 1_000,
            ..Waiting::default()
        };
        assert_eq!(
            one_batch(&mut intake, 64, &mut w),
            Taken { udp: 0, tcp: 64 }
        );
        // Fewer datagrams than their share: TCP takes the rest.
        let mut w = Waiting {
            udp: 10,
            tcp: 1_000,
            ..Waiting::default()
        };
        assert_eq!(
            one_batch(&mut intake, 64, &mut w),
            Taken { udp: 10, tcp: 54 }
        );
    }

    #[test]
    fn datagrams_come_first_in_a_batch_and_a_batch_of_one_goes_to_udp() {
        let mut intake = Intake::default();
        let mut w = Waiting {
            udp: 5,
            tcp: 5,
            ..Waiting::default()
        };
        one_batch(&mut intake, 8, &mut w);
        assert_eq!(
            w.handled,
            ["udp", "udp", "udp", "udp", "tcp", "tcp", "tcp", "tcp"]
        );
        let mut w = Waiting {
            udp: 5,
            tcp: 5,
            ..Waiting::default()
        };
        let mut intake = Intake::default();
        assert_eq!(one_batch(&mut intake, 1, &mut w), Taken { udp: 1, tcp: 0 });
    }

    #[test]
    fn batches_of_one_alternate_between_two_floods_and_odd_batches_share_the_odd_one() {
        let mut intake = Intake::default();
        let mut w = Waiting {
            udp: 1_000,
            tcp: 1_000,
            ..Waiting::default()
        };
        for _ in 0..6 {
            one_batch(&mut intake, 1, &mut w);
        }
        assert_eq!(w.handled, ["udp", "tcp", "udp", "tcp", "udp", "tcp"]);
        let mut intake = Intake::default();
        let (mut udp, mut tcp) = (0, 0);
        for _ in 0..10 {
            let t = one_batch(&mut intake, 5, &mut w);
            udp += t.udp;
            tcp += t.tcp;
        }
        assert_eq!((udp, tcp), (25, 25));
    }
}
