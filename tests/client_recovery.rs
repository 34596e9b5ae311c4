//! The client library's recovery of the session itself, against the gateway
//! and the engine in memory: a client that logs out (or is cut off past the
//! exchange's idle timeout) and logs in again receives every sequenced
//! message sent to its session meanwhile, and a request the exchange answers
//! with a zero-decrement Canceled is settled, not re-sent for ever.

mod common_client;

use common_client::{Client, Exchange};
use tokex::client::ClientEvent;
use tokex::config::GatewayConfig;
use tokex::gateway::Peer;
use tokex::types::{Price, Qty, Side, Symbol, Tif};

fn exchange() -> Exchange {
    Exchange::new(&GatewayConfig::default(), 1 << 10)
}

fn client(user: &str, port: u16) -> Client {
    Client::new(user, "R", port)
}

fn tk() -> Symbol {
    Symbol::new("TK2612").unwrap()
}

fn executed(c: &Client) -> bool {
    c.events
        .iter()
        .any(|e| matches!(e, ClientEvent::Executed { .. }))
}

/// Two logged-in clients, A (demo01) resting a 2-lot sell at the price
/// returned, B (demo02) to trade with it.
fn a_rests_a_sell() -> (Exchange, Client, Client, Price) {
    let mut x = exchange();
    let mut a = client("demo01", 1);
    let mut b = client("demo02", 2);
    a.session.login(x.now);
    b.session.login(x.now);
    x.run(&mut [&mut a, &mut b], 5);
    let px: Price = "6.500".parse().unwrap();
    a.session
        .enter(x.now, tk(), Side::Sell, Qty::new(2), px, Tif::Day);
    x.run(&mut [&mut a, &mut b], 5);
    (x, a, b, px)
}

#[test]
fn a_fill_while_logged_out_reaches_the_client_after_it_logs_in_again() {
    let (mut x, mut a, mut b, px) = a_rests_a_sell();
    a.session.logout(x.now);
    x.run(&mut [&mut a, &mut b], 5);
    b.session
        .enter(x.now, tk(), Side::Buy, Qty::new(2), px, Tif::Day);
    x.run(&mut [&mut a, &mut b], 5);
    assert!(executed(&b));
    assert!(!executed(&a), "A is logged out when its order trades");
    a.session.login(x.now);
    x.run(&mut [&mut a, &mut b], 100);
    assert!(a.session.is_logged_in());
    assert_eq!(a.session.stats().unrecoverable, 0);
    assert_eq!(
        a.session.next_sequence(),
        x.gw.next_sequence("demo01").unwrap(),
        "the client's numbering reached the exchange's"
    );
    assert!(
        executed(&a),
        "the maker learns of its fill: delivered {} sequenced, events {:?}",
        a.session.stats().sequenced,
        a.events
    );
}

#[test]
fn a_client_cut_off_past_the_idle_timeout_logs_in_again_and_learns_of_its_fills() {
    let (mut x, mut a, mut b, px) = a_rests_a_sell();
    // 16 s without a link for A: past the gateway's 15 s idle timeout, so
    // the exchange unbinds A's session and keeps its fills to itself.
    let a_peer = a.peer;
    let not_a = move |p: Peer| p != a_peer;
    for _ in 0..16_000 {
        x.step(&mut [&mut a, &mut b], &mut (), not_a, not_a);
    }
    assert!(
        !a.session.is_logged_in(),
        "3 s of silence is a lost session"
    );
    assert_eq!(
        a.events
            .iter()
            .filter(|e| **e == ClientEvent::ConnectionLost)
            .count(),
        1
    );
    b.session
        .enter(x.now, tk(), Side::Buy, Qty::new(2), px, Tif::Day);
    // The link is back.
    x.run(&mut [&mut a, &mut b], 1_000);
    assert!(executed(&b));
    assert!(a.session.is_logged_in());
    assert!(
        executed(&a),
        "after the link came back: logged_in={} (exchange next seq {:?}, client {})",
        a.session.is_logged_in(),
        x.gw.next_sequence("demo01"),
        a.session.next_sequence()
    );
    assert_eq!(
        a.session.next_sequence(),
        x.gw.next_sequence("demo01").unwrap()
    );
    assert_eq!(a.session.stats().unrecoverable, 0);
    // A quiet exchange that heartbeats is not silence.
    x.run(&mut [&mut a, &mut b], 10_000);
    assert_eq!(
        a.events
            .iter()
            .filter(|e| **e == ClientEvent::ConnectionLost)
            .count(),
        1
    );
}

#[test]
fn a_cancel_to_the_open_size_is_answered_and_not_resent_for_ever() {
    let mut x = exchange();
    let mut a = client("demo01", 1);
    a.session.login(x.now);
    x.run(&mut [&mut a], 5);
    let t = a.session.enter(
        x.now,
        tk(),
        Side::Buy,
        Qty::new(3),
        "6.400".parse().unwrap(),
        Tif::Day,
    );
    x.run(&mut [&mut a], 5);
    assert_eq!(a.session.outstanding(), 0);
    a.session.cancel(x.now, t, Qty::new(3));
    x.run(&mut [&mut a], 10_000);
    assert_eq!(
        a.session.outstanding(),
        0,
        "after 10 s still waiting; {} re-sends, {} re-requests",
        a.session.stats().resent,
        a.session.stats().recoveries
    );
}

#[test]
fn a_second_run_with_the_first_runs_token_prefix_has_its_order_given_up_without_flooding_the_exchange(
) {
    let mut x = exchange();
    // The first run of a program with a fixed token prefix: an order,
    // answered, then a logout.
    let mut first = client("demo06", 1);
    first.session.login(x.now);
    x.run(&mut [&mut first], 5);
    let px: Price = "6.400".parse().unwrap();
    let used = first
        .session
        .enter(x.now, tk(), Side::Buy, Qty::new(1), px, Tif::Day);
    x.run(&mut [&mut first], 5);
    assert_eq!(first.session.outstanding(), 0);
    first.session.logout(x.now);
    x.run(&mut [&mut first], 5);
    // The second run, the same prefix: its first order has the first run's
    // token, which the exchange drops as a re-sent copy, and its answer is
    // older than the new session's stream.
    let mut second = client("demo06", 2);
    second.session.login(x.now);
    x.run(&mut [&mut second], 5);
    assert!(second.session.is_logged_in());
    let logins_before = x.gw.counters().logins;
    let t = second
        .session
        .enter(x.now, tk(), Side::Buy, Qty::new(1), px, Tif::Day);
    assert_eq!(t, used);
    x.run(&mut [&mut second], 5_000);
    // Told within the 5 s, and given up: no longer re-sent.
    assert!(
        second.events.contains(&ClientEvent::Unanswered {
            token: t,
            request: b'O'
        }),
        "{:?}",
        second.events
    );
    assert_eq!(second.session.outstanding(), 0);
    // A handful of re-requests, not one per round trip (the exchange
    // answers and journals every one).
    let logins = x.gw.counters().logins - logins_before;
    assert!(
        logins <= 30,
        "{logins} logins in 5 s; the client's stats: {:?}",
        second.session.stats()
    );
    assert!(second.session.is_logged_in());
}

#[test]
fn a_client_of_an_exchange_restarted_without_a_journal_goes_on_with_the_new_stream_and_enters_no_old_order(
) {
    let (mut x, mut a, _b, px) = a_rests_a_sell();
    assert_eq!(a.session.next_sequence(), 2, "A's order was accepted");
    // An order the exchange never answers: it goes down as it is sent.
    let old = a
        .session
        .enter(x.now, tk(), Side::Buy, Qty::new(1), px, Tif::Day);
    x.step(&mut [&mut a], &mut (), |_| false, |_| true);
    // The exchange comes back at once without a journal: a new stream, 1
    // next, which knows neither A's session binding nor its orders.
    let mut y = exchange();
    y.now = x.now;
    y.run(&mut [&mut a], 5_000);
    assert!(a.session.is_logged_in());
    assert_eq!(
        a.session.stats().new_streams,
        1,
        "{:?} {:?}",
        a.session.stats(),
        a.events
    );
    let from = a
        .events
        .iter()
        .position(|e| matches!(e, ClientEvent::NewStream { .. }))
        .unwrap();
    assert_eq!(
        a.events[from..],
        [
            ClientEvent::NewStream {
                next_sequence: 1,
                previous: 2
            },
            ClientEvent::Unanswered {
                token: old,
                request: b'O'
            }
        ]
    );
    assert_eq!(y.gw.counters().orders, 0, "the old order was not entered");
    // A new order is answered on the new stream and its answer delivered.
    let new = a
        .session
        .enter(y.now, tk(), Side::Buy, Qty::new(1), px, Tif::Day);
    y.run(&mut [&mut a], 5);
    assert!(
        matches!(a.events.last(), Some(ClientEvent::Accepted { token, .. }) if *token == new),
        "{:?}",
        a.events
    );
    assert_eq!(a.session.outstanding(), 0);
    assert_eq!(a.session.stats().duplicates_dropped, 0);
    assert_eq!(
        a.session.next_sequence(),
        y.gw.next_sequence("demo01").unwrap()
    );
}
