//! The national hub on PostgreSQL: two hub processes on one database, and
//! a failover of that database (a synchronous hot standby promoted after
//! the primary is SIGKILLed) that loses nothing a hub acknowledged.

mod common;

use std::time::Duration;

use common::country::*;
use common::postgres::Postgres;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hubs_on_one_postgresql_share_the_load_and_catch_a_double_use() {
    let pg = Postgres::primary();
    let mut c = Country::start_with(Some(pg.uri())).await;
    let mut second = Hub::sharing(&c.hub, "permitgate-hub-2");
    second.start();
    let mut officer_a = Officer::connect_to(c.a.broker.port, "officer-a", "post-a").await;
    let mut officer_b = Officer::connect_to(c.b.broker.port, "officer-b", "post-b").await;
    const N: usize = 60;
    for i in 0..N {
        officer_a
            .send(declaration(
                &format!("DA-{i}"),
                Some(&c.a.token_for(&format!("LIC-A-{i}"))),
            ))
            .await;
        officer_b
            .send(declaration(
                &format!("DB-{i}"),
                Some(&c.b.token_for(&format!("LIC-B-{i}"))),
            ))
            .await;
    }
    officer_a.verdict_for(&format!("DA-{}", N - 1)).await;
    officer_b.verdict_for(&format!("DB-{}", N - 1)).await;
    assert!(
        eventually(30, || c.hub.records() == 2 * N
            && c.a.outbox() == 0
            && c.b.outbox() == 0)
        .await,
        "hub {}, outboxes {} {}\n{}\n{}",
        c.hub.records(),
        c.a.outbox(),
        c.b.outbox(),
        c.hub.log(),
        second.log()
    );
    assert_eq!(c.hub.head(), 2 * N, "one gap-free national log");
    // One license used at both posts, while both were cut off: one alert.
    let _ = c.national.child.kill();
    let _ = c.national.child.wait();
    let token = c.a.token_for("LIC-TWICE");
    officer_a.send(declaration("DA-X", Some(&token))).await;
    officer_b.send(declaration("DB-X", Some(&token))).await;
    assert_eq!(officer_a.verdict_for("DA-X").await["verdict"], "cleared");
    assert_eq!(officer_b.verdict_for("DB-X").await["verdict"], "cleared");
    c.national.restart();
    assert!(
        eventually(30, || c.hub.alerts_of("double_use") == 1).await,
        "{}\n{}",
        c.hub.log(),
        second.log()
    );
    assert!(eventually(20, || c.a.alerts_of("double_use") == 1).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_of_the_database_loses_nothing_a_hub_acknowledged() {
    let mut primary = Postgres::primary();
    let standby = Postgres::standby_of(&primary);
    let uri = format!(
        "postgresql://postgres@127.0.0.1:{},127.0.0.1:{}/permitgate?target_session_attrs=read-write&connect_timeout=2",
        primary.port, standby.port
    );
    let c = Country::start_with(Some(uri)).await;
    let mut second = Hub::sharing(&c.hub, "permitgate-hub-2");
    second.start();
    let officer = Officer::connect_to(c.a.broker.port, "officer-a", "post-a").await;
    const N: usize = 200;
    let tokens: Vec<String> = (0..N)
        .map(|i| c.a.token_for(&format!("LIC-F-{i:03}")))
        .collect();
    for (i, t) in tokens.iter().enumerate().take(N / 2) {
        officer.send(declaration(&format!("DF-{i}"), Some(t))).await;
    }
    // Some records are in when the primary dies, hard.
    assert!(
        eventually(30, || c.hub.records() >= N / 4).await,
        "{}",
        c.hub.log()
    );
    primary.kill();
    for (i, t) in tokens.iter().enumerate().skip(N / 2) {
        officer.send(declaration(&format!("DF-{i}"), Some(t))).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    standby.promote();
    // The hubs carry on by themselves on the promoted standby.
    assert!(
        eventually(60, || c.hub.records() == N && c.a.outbox() == 0).await,
        "standby holds {}, A's outbox {}\n{}\n{}",
        c.hub.records(),
        c.a.outbox(),
        c.hub.log(),
        second.log()
    );
    assert_eq!(c.hub.head(), N, "every record once, numbered without gaps");
    assert_eq!(
        common::postgres::query(
            &standby.uri(),
            "SELECT COUNT(DISTINCT (checkpoint, seq)) FROM records"
        ) as usize,
        N
    );
    assert!(
        c.hub.log().contains("the store fails") || second.log().contains("the store fails"),
        "the failover was seen"
    );
    assert!(eventually(20, || c.b.remote_consumptions() == N).await);
}
