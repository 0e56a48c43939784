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

fn get(url: &str) -> (u16, serde_json::Value, String) {
    let (code, body) = match ureq::get(url).call() {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(c, r)) => (c, r.into_string().unwrap_or_default()),
        Err(e) => panic!("{url}: {e}"),
    };
    (code, serde_json::from_str(&body).unwrap_or_default(), body)
}

/// The hub's metrics, health and national view over HTTP, on both stores.
async fn observable(pg: Option<String>) {
    let mut c = Country::configured_with("", pg);
    let base = c.hub.enable_http();
    c.hub.start();
    c.a.start();
    c.b.start();
    wait_online(c.a.broker.port).await;
    wait_online(c.b.broker.port).await;
    let mut officer_a = Officer::connect_to(c.a.broker.port, "officer-a", "post-a").await;
    let mut officer_b = Officer::connect_to(c.b.broker.port, "officer-b", "post-b").await;
    let _ = c.national.child.kill();
    let _ = c.national.child.wait();
    let token = c.a.token_for("LIC-SEEN");
    officer_a.send(declaration("DA-1", Some(&token))).await;
    officer_b.send(declaration("DB-1", Some(&token))).await;
    assert_eq!(officer_a.verdict_for("DA-1").await["verdict"], "cleared");
    assert_eq!(officer_b.verdict_for("DB-1").await["verdict"], "cleared");
    c.national.restart();
    assert!(
        eventually(30, || c.hub.alerts_of("double_use") == 1).await,
        "{}",
        c.hub.log()
    );

    let (code, health, _) = get(&format!("{base}/healthz"));
    assert_eq!(
        (code, health["state"].as_str()),
        (200, Some("ready")),
        "{health}"
    );
    let (_, _, metrics) = get(&format!("{base}/metrics"));
    assert!(
        metrics.contains("permitgate_hub_records_stored_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("permitgate_hub_alerts_total{kind=\"double_use\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("permitgate_hub_checkpoint_contiguous{checkpoint=\"post-a\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("permitgate_hub_national_log_size 2"),
        "{metrics}"
    );

    // A license's story: both uses, the double use, its alert with evidence.
    let (code, story, _) = get(&format!("{base}/api/licenses/LIC-SEEN"));
    assert_eq!(code, 200);
    assert_eq!(story["double_use"], true);
    let uses = story["uses"].as_array().unwrap();
    let mut who: Vec<&str> = uses
        .iter()
        .map(|u| u["checkpoint"].as_str().unwrap())
        .collect();
    who.sort();
    assert_eq!(who, ["post-a", "post-b"]);
    assert_eq!(uses[0]["end_user"], "DE-HRB-20002");
    assert_eq!(uses[0]["destination"], "DE");
    assert_eq!(story["alerts"][0]["records"].as_array().unwrap().len(), 2);
    let (_, cps, _) = get(&format!("{base}/api/checkpoints"));
    assert_eq!(cps["checkpoints"].as_array().unwrap().len(), 2, "{cps}");
    // Where controlled goods went: by end user, destination, heading.
    for (by, key) in [
        ("end_user", "DE-HRB-20002"),
        ("destination", "DE"),
        ("hs", "8505"),
    ] {
        let (code, flows, _) = get(&format!("{base}/api/flows?by={by}&since=2020-01-01"));
        assert_eq!(code, 200, "{flows}");
        let rows = flows["flows"].as_array().unwrap();
        assert_eq!(rows.len(), 1, "{flows}");
        assert_eq!(
            (rows[0]["key"].as_str(), rows[0]["records"].as_u64()),
            (Some(key), Some(2))
        );
    }
    let (code, _, _) = get(&format!("{base}/api/flows?by=colour"));
    assert_eq!(code, 400);
    let (_, alerts, _) = get(&format!("{base}/api/alerts?kind=double_use"));
    assert_eq!(alerts["alerts"].as_array().unwrap().len(), 1);
    // The broker gone: degraded, said why.
    let _ = c.national.child.kill();
    let _ = c.national.child.wait();
    let health_says = || get(&format!("{base}/healthz")).1["reasons"].to_string();
    assert!(
        eventually(30, || health_says().contains("national broker")).await,
        "{}",
        health_says()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_is_observable_and_queryable_over_http_on_sqlite() {
    observable(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_is_observable_and_queryable_over_http_on_postgresql() {
    let pg = Postgres::primary();
    observable(Some(pg.uri())).await;
}
